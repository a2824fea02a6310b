"""Bulk imports of reference data from spreadsheet files."""
