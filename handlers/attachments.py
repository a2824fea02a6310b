"""Files members send: one set of limits and messages for every flow that takes them."""

from __future__ import annotations

from handlers.context import Context
from handlers.types import Attachment

PHOTO_MB = 10
FILE_MB = 20  # the largest file a bot may fetch from Telegram
FILE_TYPES = (
    "application/pdf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "image/",
)


def refusal(ctx: Context, attachment: Attachment, *, photos_only: bool = False) -> str | None:
    """Return why a file is not taken (too big, wrong type), or None if it is fine."""
    name = attachment.name or ctx.t("upload.unnamed")
    is_image = attachment.kind == "photo" or (attachment.mime_type or "").startswith("image/")
    if photos_only and not is_image:
        return ctx.t("upload.not_photo", name=name)
    if not is_image and not (attachment.mime_type or "").startswith(FILE_TYPES):
        return ctx.t("upload.bad_type", name=name)
    maximum = PHOTO_MB if is_image else FILE_MB
    if attachment.size is not None and attachment.size > maximum * 1024 * 1024:
        size = round(attachment.size / 1024 / 1024, 1)
        return ctx.t("upload.too_big", name=name, size=size, maximum=maximum)
    return None
