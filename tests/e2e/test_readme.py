"""The README's newcomer path, as printed: every ```python block of README.md is pasted, line by
line, into an interactive Python console (code.InteractiveConsole, which reads a paste exactly
as `python3`'s prompt does: a compound statement ends at a blank line or a dedent), all blocks in
one namespace, in order, against a live server. The server listens on the README's own port 4747
when it is free, so the text runs unchanged; when another server holds 4747 (e.g. a parallel
test run), only the endpoint URL `http://127.0.0.1:4747` is replaced by this server's.

Also checked: the `make link` step that puts `lambdaplane` on the PATH."""
from __future__ import annotations

import code
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import LiveServer, free_port

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_ENDPOINT = "http://127.0.0.1:4747"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Paste(code.InteractiveConsole):
    """A console that records what the prompt would have shown as an error."""

    def __init__(self) -> None:
        super().__init__({"__name__": "__console__"})
        self.errors: list[str] = []
        self.output: list[str] = []

    def showsyntaxerror(self, filename: str | None = None, **_: object) -> None:
        import traceback
        import sys
        self.errors.append("".join(traceback.format_exception_only(*sys.exc_info()[:2])))

    def showtraceback(self) -> None:
        import traceback
        import sys
        self.errors.append("".join(traceback.format_exception(*sys.exc_info())))

    def paste(self, block: str) -> None:
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for line in block.splitlines():
                self.push(line)
            self.push("")  # the Enter a user presses after the paste
        self.output.append(out.getvalue())


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("lp") / "data")
    if port_free(4747):
        server.port = 4747
    try:
        try:
            server.start()
        except RuntimeError:  # 4747 taken between the check and the bind: any free port
            if server.port != 4747:
                raise
            server.stop()
            server.port = free_port()
            server.start()
        yield server
    finally:
        server.stop()
        left = server.leftovers()
        server.backstop_clean()
        assert not left, f"server left behind: {left}\n{server.log()}"


def test_readme_has_the_examples() -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 2
    assert all(README_ENDPOINT in block for block in blocks[:2])


def test_every_python_block_pastes_and_runs_as_printed(readme_server: LiveServer) -> None:
    console = Paste()
    for i, block in enumerate(python_blocks(README.read_text())):
        console.paste(block.replace(README_ENDPOINT, readme_server.endpoint))
        assert not console.errors, f"README python block {i + 1} failed:\n" + \
            "\n".join(console.errors) + f"\n{block}\n{readme_server.log()}"
    ns = console.locals
    # the first block: the hello function answered
    assert "{'hello': 'world'" in console.output[0]
    # the VPC block: an ENI listed, and the inbound rule the `lambdaplane run` service needs
    assert "eni-" in console.output[1]
    group = ns["ec2"].describe_security_groups(GroupIds=[ns["sg"]])["SecurityGroups"][0]
    assert {(p["IpProtocol"], p.get("FromPort")) for p in group["IpPermissions"]} == {("tcp", 8080)}
    # "Then `lambdaplane logs hello` shows what the function printed"
    logs = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "logs", "hello",
                           "--endpoint", readme_server.endpoint],
                          capture_output=True, text=True, timeout=60)
    assert logs.returncode == 0 and "hello, world" in logs.stdout, logs
    # leave nothing for the server's stop to trip over: the README's functions go
    for name in ("hello", "in-vpc"):
        ns["lam"].delete_function(FunctionName=name)


def test_a_block_without_its_blank_line_is_caught() -> None:
    """The check itself: the README's old first block (no blank line after `with`) fails."""
    console = Paste()
    console.paste("import io, zipfile\nbuf = io.BytesIO()\n"
                  "with zipfile.ZipFile(buf, 'w') as zf:\n    zf.writestr('a', 'b')\nx = 1\n")
    assert console.errors and "SyntaxError" in console.errors[0]


def test_make_link_puts_the_command_on_the_path(tmp_path: Path) -> None:
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "link", f"BIN_DIR={tmp_path}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    link = tmp_path / "lambdaplane"
    assert link.is_symlink() and str(link.readlink()) == str(ROOT / ".venv/bin/lambdaplane")
    assert "linked" in out.stdout
    again = subprocess.run(["make", "-s", "-C", str(ROOT), "link", f"BIN_DIR={tmp_path}"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout == ""  # already right: nothing to say
