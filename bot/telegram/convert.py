"""Turn Telegram updates into neutral messages and neutral replies into Telegram markup."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update

from handlers.types import Attachment, Choice, Incoming

CHANNEL = "telegram"
# Labels up to this length sit two to a row; longer ones get a row each.
_SHORT_LABEL = 18


def to_incoming(update: Update) -> Incoming | None:
    """Return the neutral message for a private message or button press, else None."""
    key = str(update.update_id)
    query = update.callback_query
    if query is not None:
        if query.data is None:
            return None
        chat = query.message.chat.id if query.message is not None else query.from_user.id
        return Incoming(
            channel=CHANNEL,
            user_id=str(query.from_user.id),
            chat_id=str(chat),
            update_key=key,
            choice=query.data,
            display_name=query.from_user.full_name,
        )
    message = update.message
    if message is None or message.from_user is None or message.chat.type != "private":
        return None
    attachments: list[Attachment] = []
    if message.photo:
        largest = message.photo[-1]
        attachments.append(Attachment("photo", largest.file_id, size=largest.file_size))
    if message.document is not None:
        document = message.document
        attachments.append(
            Attachment(
                "document",
                document.file_id,
                name=document.file_name,
                mime_type=document.mime_type,
                size=document.file_size,
            )
        )
    return Incoming(
        channel=CHANNEL,
        user_id=str(message.from_user.id),
        chat_id=str(message.chat.id),
        update_key=key,
        text=message.text or message.caption,
        attachments=tuple(attachments),
        display_name=message.from_user.full_name,
    )


def keyboard(choices: tuple[Choice, ...]) -> InlineKeyboardMarkup | None:
    """Lay out choices as an inline keyboard: short labels in pairs, long ones alone."""
    if not choices:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    pair: list[InlineKeyboardButton] = []
    for choice in choices:
        button = InlineKeyboardButton(choice.label, callback_data=choice.data)
        if len(choice.label) > _SHORT_LABEL:
            if pair:
                rows.append(pair)
                pair = []
            rows.append([button])
            continue
        pair.append(button)
        if len(pair) == 2:
            rows.append(pair)
            pair = []
    if pair:
        rows.append(pair)
    return InlineKeyboardMarkup(rows)
