"""The composition root: builds and runs the bot from its settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from bot import console
from bot.channels import Channel
from bot.delivery import Deliverer
from bot.ratelimit import ChannelLimiter, Limits
from bot.settings import Settings
from bot.telegram.channel import (
    ALLOWED_UPDATES,
    TelegramChannel,
    TelegramInviteLinks,
    build_application,
)
from bot.telegram.channel import TRAITS as TELEGRAM_TRAITS
from bot.web import TELEGRAM_WEBHOOK_PATH, build_web_app, telegram_webhook
from handlers.context import CoreConfig, Services
from handlers.dispatcher import Dispatcher
from handlers.i18n import Catalogue
from handlers.routing import build_routes
from scheduler.service import ScheduleConfig, Scheduler
from storage import app_state
from storage.clock import Clock, SystemClock
from storage.engine import create_engine, create_session_factory, is_sqlite
from storage.migrate import upgrade

log = logging.getLogger(__name__)

CHANNEL_TRAITS = {traits.name: traits for traits in (TELEGRAM_TRAITS, console.TRAITS)}


@dataclass(slots=True)
class BotIdentity:
    """What the bot learns about itself from the messengers at start."""

    telegram_username: str | None = None


class BotRuntime:
    """Everything a running bot consists of, started and stopped in order."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.engine = create_engine(settings.database_url)
        self.sessions = create_session_factory(self.engine)
        self.texts = Catalogue.load()
        self.identity = BotIdentity()
        self.routes = build_routes()
        self.channels: dict[str, Channel] = {}
        self.deliverer = Deliverer(
            self.sessions,
            self.channels,
            self.clock,
            concurrency=settings.delivery_concurrency,
            lease=timedelta(seconds=settings.delivery_lease_seconds),
            # With SQLite there is one process: claims it left when it died can be taken back.
            single_process=is_sqlite(settings.database_url),
            quiet=settings.quiet,
        )
        self.services = Services(
            sessions=self.sessions,
            clock=self.clock,
            texts=self.texts,
            config=CoreConfig(
                timezone=settings.zone,
                consent_version=settings.consent_version,
                invite_default_uses=settings.invite_default_uses,
                invite_default_days=settings.invite_default_days,
                run_time=settings.run_time,
                quiet=settings.quiet,
            ),
            channels=CHANNEL_TRAITS,
            invite_links=TelegramInviteLinks(lambda: self.identity.telegram_username),
        )
        self.dispatcher = Dispatcher(self.services, self.routes)
        self.scheduler = Scheduler(
            self.sessions,
            self.engine,
            self.clock,
            self.texts,
            ScheduleConfig(
                zone=settings.zone,
                run_time=settings.run_time,
                grace=timedelta(hours=settings.schedule_grace_hours),
            ),
            self.deliverer.wake,
        )
        self.telegram: TelegramChannel | None = None
        self._web: web.AppRunner | None = None
        self.http_port: int | None = None

    @property
    def webhook_mode(self) -> bool:
        return bool(self.settings.telegram_webhook_url)

    async def prepare(self) -> None:
        """Migrate the database and recall what was learnt on earlier runs."""
        await upgrade(self.engine)
        async with self.sessions() as session:
            self.identity.telegram_username = await app_state.get(
                session, app_state.TELEGRAM_USERNAME
            )

    def add_channel(self, channel: Channel) -> None:
        self.channels[channel.traits.name] = channel

    async def start(self, *, serve_http: bool = True, schedule: bool = True) -> None:
        """Start the messengers, the web server, the delivery service and the scheduler.

        Tests that move a manual clock pass `schedule=False` and call `scheduler.tick()`.
        """
        await self.prepare()
        token = self.settings.telegram_bot_token
        if token is not None:
            application = build_application(
                token.get_secret_value(),
                self.settings.telegram_api_base_url,
                webhook=self.webhook_mode,
                concurrent_updates=self.settings.telegram_concurrent_updates,
                pool_size=self.settings.telegram_concurrent_updates
                + self.settings.delivery_concurrency,
            )
            self.telegram = TelegramChannel(
                application,
                self.dispatcher,
                self.sessions,
                self.clock,
                self.texts,
                self.deliverer.wake,
                ChannelLimiter(Limits(per_second=self.settings.telegram_rate_limit)),
            )
            await self.telegram.initialize(self.routes.menu())
            self.identity.telegram_username = self.telegram.username
            self.add_channel(self.telegram)
        if serve_http:
            await self._start_web()
        if self.telegram is not None:
            await self._start_telegram(self.telegram)
        self.deliverer.start()
        if schedule:
            self.scheduler.start()

    async def _start_web(self) -> None:
        app = build_web_app()
        secret = self.settings.telegram_webhook_secret
        if self.telegram is not None and self.webhook_mode and secret is not None:
            handler = telegram_webhook(secret.get_secret_value(), self.telegram.receive_webhook)
            app.router.add_post(TELEGRAM_WEBHOOK_PATH, handler)
        self._web = web.AppRunner(app, access_log=None)
        await self._web.setup()
        site = web.TCPSite(self._web, self.settings.http_host, self.settings.http_port)
        await site.start()
        addresses = self._web.addresses
        self.http_port = int(addresses[0][1]) if addresses else self.settings.http_port
        log.info("HTTP server on %s:%s", self.settings.http_host, self.http_port)

    async def _start_telegram(self, telegram: TelegramChannel) -> None:
        application = telegram.application
        await application.start()
        secret = self.settings.telegram_webhook_secret
        if self.webhook_mode and secret is not None:
            await telegram.replay_stored()
            await application.bot.set_webhook(
                url=str(self.settings.telegram_webhook_url),
                secret_token=secret.get_secret_value(),
                allowed_updates=ALLOWED_UPDATES,
            )
            log.info("Telegram webhook mode")
        elif application.updater is not None:
            await application.bot.delete_webhook()
            await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            log.info("Telegram long polling as @%s", telegram.username)

    async def stop(self) -> None:
        """Stop everything in the reverse order of starting."""
        await self.scheduler.stop()
        await self.deliverer.stop()
        # First stop taking webhook calls: an update stored after the Application stopped
        # would wait in its queue forever; stored, it is replayed at the next start instead.
        if self._web is not None:
            await self._web.cleanup()
            self._web = None
        if self.telegram is not None:
            application = self.telegram.application
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
            await application.shutdown()
        await self.engine.dispose()
