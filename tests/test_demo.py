"""`thidua demo` driven by a script, as a newcomer would try it."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from bot.demo import run_demo
from bot.settings import load_settings
from tests.cli_runner import child_env

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """\
/toi
/lich
:clock
:clock +3d
/dangky
1
Tôi cam kết có ít nhất 2 sáng kiến cải tiến trong năm
2 sáng kiến
1
1
:as newcomer
/start
cong ty may
1
Lê Văn Tâm
1
:as officer
1
:as newcomer
/toi
:as nobody
:help
"""


async def test_a_scripted_demo_session_joins_and_gets_approved(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = load_settings(_env_file=None)
    await run_demo(settings, stdin=io.StringIO(SCRIPT), out=out, database=tmp_path / "demo.db")
    transcript = out.getvalue()

    assert "Nguyễn Thị Lan" in transcript  # the demo member's /toi
    # The demo lives on 05/03/2023 09:00, ten days before the plan's deadline.
    assert "Đợt I (01/02/2023 – 30/06/2023), còn 117 ngày" in transcript
    assert "15/03/2023 – Đăng ký thi đua, giao ước thi đua năm 2023 (còn 10 ngày)" in transcript
    assert "Báo cáo sơ kết" not in transcript  # an officers' deadline, not a member's
    assert "Giờ của bản chạy thử: 05/03/2023 09:00" in transcript
    # Three days on, Monday's digest has reached the officer and the first reminder Lan.
    assert "Giờ của bản chạy thử: 08/03/2023 09:00" in transcript
    assert "📊 Tiến độ thi đua tuần qua – Công đoàn các Khu công nghiệp" in transcript
    assert (
        "⏰ Nhắc hạn: Đăng ký thi đua, giao ước thi đua năm 2023 – hạn chót 15/03/2023, "
        "còn 7 ngày." in transcript
    )
    assert "Đã ghi nhận đăng ký thi đua DK-2023-000001" in transcript
    assert "1. Công đoàn cơ sở Công ty TNHH May Ninh Thuận (CDCS-MAYNT)" in transcript
    assert "Tin nhắn gửi tới Trần Văn Minh" in transcript  # the officer's approval prompt
    assert "Đã duyệt: Lê Văn Tâm" in transcript
    assert "Tin nhắn gửi tới Người mới" in transcript
    assert "đã được duyệt" in transcript
    assert "Trạng thái: đang hoạt động" in transcript
    assert "Không có người này" in transcript
    assert ":as TÊN" in transcript


def test_make_demo_runs_without_a_token_from_a_pipe(tmp_path: Path) -> None:
    env = child_env()
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo"],
        input="/help\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "/toi" in result.stdout
    assert (tmp_path / "data" / "demo.db").exists()


REQUESTS_SCRIPT = """\
:as newcomer
/toi
/help
xin chào
/lich
/start
cong ty may
1
Lê Văn 2
Lê Văn Tâm
đồng ý
/toi
:as officer
/yeucau
2
/yeucau
"""


async def test_an_officer_decides_a_listed_request_by_its_number(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = load_settings(_env_file=None)
    script = io.StringIO(REQUESTS_SCRIPT)
    await run_demo(settings, stdin=script, out=out, database=tmp_path / "demo.db")
    transcript = out.getvalue()

    # Twelve lines from one person at a script's speed: answered, not slowed as a flood.
    assert "gửi nhanh quá" not in transcript
    assert "không có chữ số hay biểu tượng (bạn đã gửi 2)" in transcript
    assert "1. Lê Văn Tâm xin tham gia Công đoàn cơ sở Công ty TNHH May Ninh Thuận" in transcript
    assert "2. ❌ Từ chối: Lê Văn Tâm" in transcript
    assert "Đã từ chối yêu cầu tham gia Công đoàn cơ sở Công ty TNHH May Ninh Thuận" in transcript
    assert "Không có yêu cầu tham gia nào đang chờ duyệt" in transcript


def test_ctrl_c_at_the_demo_prompt_stops_it_at_once(tmp_path: Path) -> None:
    env = child_env()
    terminal, its_end = pty.openpty()  # a real terminal: the demo prompts and waits in input()
    demo = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo"],
        stdin=its_end,
        stdout=its_end,
        stderr=its_end,
        cwd=tmp_path,
        env=env,
    )
    os.close(its_end)
    try:
        assert "Nguyễn Thị Lan> " in _read_terminal(terminal, until="Nguyễn Thị Lan> ")
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=15) == 1
        assert "Đã dừng." in _read_terminal(terminal)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        os.close(terminal)


def _read_terminal(fd: int, until: str | None = None, timeout: float = 60) -> str:
    """Read what a program wrote to its terminal, until `until` shows or it closes."""
    seen = b""
    deadline = time.monotonic() + timeout
    while until is None or until.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{until!r} never came: {seen.decode(errors='replace')[-500:]}"
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if not ready:
            if until is None:
                break
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the program exited and closed its side
            break
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")
