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
from bot.web import (
    TELEGRAM_WEBHOOK_PATH,
    ZALO_OA_WEBHOOK_PATH,
    ZALO_WEBHOOK_PATH,
    build_web_app,
    telegram_webhook,
    zalo_oa_webhook,
    zalo_webhook,
)
from bot.zalo.channel import TRAITS as ZALO_TRAITS
from bot.zalo.channel import ZaloChannel
from bot.zalo.client import ZaloBotClient
from bot.zalo.oa import TRAITS as ZALO_OA_TRAITS
from bot.zalo.oa import ZaloOAChannel, ZaloOAClient
from bot.zalo.tokens import OATokens
from handlers.context import CoreConfig, Services
from handlers.dispatcher import Dispatcher
from handlers.i18n import Catalogue
from handlers.routing import build_routes
from scheduler.service import ScheduleConfig, Scheduler
from storage import app_state
from storage.clock import Clock, SystemClock
from storage.engine import create_engine, create_session_factory, is_sqlite
from storage.migrate import upgrade
from storage.transactions import WriteTurns

log = logging.getLogger(__name__)


class ListenError(Exception):
    """The web server cannot listen where HTTP_HOST and HTTP_PORT say."""


CHANNEL_TRAITS = {
    traits.name: traits for traits in (TELEGRAM_TRAITS, console.TRAITS, ZALO_TRAITS, ZALO_OA_TRAITS)
}


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
        self.dispatcher = Dispatcher(
            self.services,
            self.routes,
            # SQLite lets one transaction write at a time, and a message's begins by writing
            # (its claim): more at once only wait in SQLite's busy handler, which polls.
            turns=WriteTurns(one_writer=is_sqlite(settings.database_url)),
            flood_rate=settings.flood_rate,
            flood_burst=settings.flood_burst,
        )
        self.scheduler = Scheduler(
            self.sessions,
            self.engine,
            self.clock,
            self.texts,
            ScheduleConfig(
                zone=settings.zone,
                run_time=settings.run_time,
                grace=timedelta(hours=settings.schedule_grace_hours),
                left_member_retention=settings.left_member_retention,
            ),
            self.deliverer.wake,
        )
        self.telegram: TelegramChannel | None = None
        self.zalo: ZaloChannel | None = None
        self.zalo_oa: ZaloOAChannel | None = None
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
        await self.deliverer.release_previous_claims()
        token = self.settings.telegram_bot_token
        if token is not None:
            application = build_application(
                token.get_secret_value(),
                self.settings.telegram_api_base_url,
                webhook=self.webhook_mode,
                concurrent_updates=self.settings.telegram_concurrent_updates,
                pool_size=self.settings.telegram_concurrent_updates
                + self.settings.delivery_concurrency,
                read_timeout=self.settings.telegram_read_timeout,
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
        await self._build_zalo()
        if serve_http:
            await self._start_web()
        if self.telegram is not None:
            await self._start_telegram(self.telegram)
        await self._start_zalo()
        self.deliverer.start()
        if schedule:
            self.scheduler.start()

    async def _start_web(self) -> None:
        app = build_web_app()
        secret = self.settings.telegram_webhook_secret
        if self.telegram is not None and self.webhook_mode and secret is not None:
            handler = telegram_webhook(secret.get_secret_value(), self.telegram.receive_webhook)
            app.router.add_post(TELEGRAM_WEBHOOK_PATH, handler)
        zalo_secret = self.settings.zalo_webhook_secret
        if self.zalo is not None and self.settings.zalo_webhook_url and zalo_secret is not None:
            receive = self.zalo.receive_webhook
            app.router.add_post(
                ZALO_WEBHOOK_PATH, zalo_webhook(zalo_secret.get_secret_value(), receive)
            )
        oa_key = self.settings.zalo_oa_secret_key
        if self.zalo_oa is not None and self.settings.zalo_oa_app_id and oa_key is not None:
            handler = zalo_oa_webhook(
                self.settings.zalo_oa_app_id,
                oa_key.get_secret_value(),
                self.zalo_oa.receive_webhook,
            )
            app.router.add_post(ZALO_OA_WEBHOOK_PATH, handler)
        self._web = web.AppRunner(app, access_log=None)
        await self._web.setup()
        host, port = self.settings.http_host, self.settings.http_port
        site = web.TCPSite(self._web, host, port)
        try:
            await site.start()
        except OSError as error:  # the port is taken, or the host is not this machine's
            raise ListenError(f"{host}:{port} ({error.strerror or error})") from error
        addresses = self._web.addresses
        self.http_port = int(addresses[0][1]) if addresses else self.settings.http_port
        log.info("HTTP server on %s:%s", self.settings.http_host, self.http_port)

    async def _start_telegram(self, telegram: TelegramChannel) -> None:
        application = telegram.application
        await application.start()
        # Updates stored but not answered when the process last stopped, in either mode.
        await telegram.replay_stored()
        secret = self.settings.telegram_webhook_secret
        if self.webhook_mode and secret is not None:
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

    async def _build_zalo(self) -> None:
        """Create the Zalo channels the settings ask for: the bot, the Official Account."""
        settings = self.settings
        if settings.zalo_bot_token is not None:
            client = ZaloBotClient(
                settings.zalo_bot_token.get_secret_value(), settings.zalo_bot_api_base_url
            )
            self.zalo = ZaloChannel(
                client, self.dispatcher, self.sessions, self.clock, self.texts, self.deliverer.wake
            )
            await self.zalo.initialize()
            self.add_channel(self.zalo)
        secret = settings.zalo_oa_secret_key
        refresh = settings.zalo_oa_refresh_token
        if settings.zalo_oa_app_id and secret is not None and refresh is not None:
            app_secret = settings.zalo_oa_app_secret_key or secret
            access = settings.zalo_oa_access_token
            tokens = OATokens(
                self.sessions,
                self.clock,
                oauth_base_url=settings.zalo_oa_oauth_base_url,
                app_id=settings.zalo_oa_app_id,
                app_secret_key=app_secret.get_secret_value(),
                access_token=access.get_secret_value() if access is not None else None,
                refresh_token=refresh.get_secret_value(),
            )
            await tokens.load()
            self.zalo_oa = ZaloOAChannel(
                ZaloOAClient(settings.zalo_oa_api_base_url, tokens),
                self.dispatcher,
                self.sessions,
                self.clock,
                self.texts,
                self.deliverer.wake,
            )
            self.add_channel(self.zalo_oa)

    async def _start_zalo(self) -> None:
        """Answer what was stored before the last stop, then take new events."""
        for channel in (self.zalo, self.zalo_oa):
            if channel is not None:
                channel.start_workers()
                await channel.replay_stored()
        if self.zalo_oa is not None:
            self.zalo_oa.start_token_keeper()
        if self.zalo is not None:
            secret = self.settings.zalo_webhook_secret
            if self.settings.zalo_webhook_url and secret is not None:
                await self.zalo.client.set_webhook(
                    self.settings.zalo_webhook_url, secret.get_secret_value()
                )
                log.info("Zalo bot webhook mode")
            else:
                # getUpdates gets nothing while a webhook is set.
                await self.zalo.client.delete_webhook()
                self.zalo.start_polling()
                log.info("Zalo bot long polling")

    async def _stop_zalo(self) -> None:
        if self.zalo is not None:
            await self.zalo.stop_polling()
            await self.zalo.stop_workers()
            await self.zalo.client.close()
        if self.zalo_oa is not None:
            await self.zalo_oa.stop_token_keeper()
            await self.zalo_oa.stop_workers()
            await self.zalo_oa.client.close()

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
            # Updates waiting for the database stop waiting; stored, they are replayed.
            await self.telegram.close()
            if application.running:
                await application.stop()
            await application.shutdown()
        await self._stop_zalo()
        await self.engine.dispose()
