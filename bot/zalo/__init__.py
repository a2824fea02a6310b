"""Zalo: the Zalo Bot API channel ("zalo") and the Zalo Official Account channel ("zalo_oa")."""
