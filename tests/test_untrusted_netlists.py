"""Untrusted netlists: every door ngspice offers to its control language is refused without
--allow-control, the sandbox confines what an allowed deck does, and an interrupt leaves no
ngspice process and no run folder behind. Each attack deck is shown to be real: run with control
allowed and no sandbox, it leaves its marker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NETLISTS_DIR, default_sigint, memspice

from memspice.errors import SpiceError
from memspice.spice import sandbox
from memspice.spice.runner import run_file
from memspice.spice.safety import UnsafeNetlistError, netlist_files
from memspice.spice.shared import run_shared

CIRCUIT = "V1 a 0 DC 1\nR1 a 0 1k\n.tran 1u 10u\n"
SANDBOX_WORKS = sandbox.probe() is None
needs_sandbox = pytest.mark.skipif(not SANDBOX_WORKS, reason=f"no sandbox on this machine: {sandbox.probe()}")
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build the code-model library")
EVIL_C = '#include <stdio.h>\n__attribute__((constructor)) static void pwn(void) ' \
         '{ FILE *f = fopen(MARKER, "w"); if (f) { fputs("pwned", f); fclose(f); } }\n'


def _control(body: str) -> dict[str, str]:
    return {"main.cir": f"* t\n{CIRCUIT}.control\n{body}\n.endc\n.end\n"}


def _doors(m: Path, so: Path) -> dict[str, dict[str, str]]:
    """File name -> text of each attack deck (``main.cir`` is simulated); ``m`` is the marker
    path an attack writes, ``so`` a library whose constructor writes it."""
    doors = {
        "include": {"main.cir": f"* t\n{CIRCUIT}.include evil.inc\n.end\n",
                    "evil.inc": f".control\nshell touch {m}\n.endc\n"},
        "include-absolute": {"main.cir": f"* t\n{CIRCUIT}.include {{folder}}/sub/evil.inc\n.end\n",
                             "sub/evil.inc": f".control\nshell touch {m}\n.endc\n"},
        "lib": {"main.cir": f"* t\n{CIRCUIT}.lib evil.lib sec\n.end\n",
                "evil.lib": f".lib sec\n.control\nshell touch {m}\n.endc\n.endl sec\n"},
        "star-hash": {"main.cir": f"* t\n{CIRCUIT}*# shell touch {m}\n.end\n"},
        "ng_script": {"main.cir": f"*ng_script\nshell touch {m}\n"},
        "alias": _control(f"alias sx shell\nsx touch {m}"),
        "backquote": _control(f"echo `touch {m}`"),
        "unixcom": _control(f"set unixcom\ntouch {m}"),
        "backslash-shell": _control(f"\\shell touch {m}"),
        "pre_shell": _control(f"pre_shell touch {m}"),
        "codemodel": _control(f"codemodel {so}"),
        "pre_codemodel": _control(f"pre_codemodel {so}"),
        "redirect": _control(f"run\nprint v(a) >& {m}"),
        "redirect-append": _control(f"run\nprint v(a) >>& {m}"),
        "rawfile-write": _control(f"set rawfile = {m}\nrun\nwrite"),
        "mdump": _control(f"op\nmdump {m}"),
        "mrdump": _control(f"op\nmrdump {m}"),
        "gnuplot": _control(f"run\ngnuplot {m} v(a)"),
        # a carriage return is dropped wherever it stands, so this is a .control card to ngspice
        "carriage-return-inside": {"main.cir": f"* t\n{CIRCUIT}.con\rtrol\nshell touch {m}\n.endc\n.end\n"},
        # XSPICE reads the first line with fgets into 5000 bytes: the rest is a line of its own
        "first-line-5000-bytes": {"main.cir": "*" + "x" * 4998 + f".control\nshell touch {m}\n.endc\n{CIRCUIT}.end\n"},
    }
    # line breaks Python's splitlines() sees and ngspice does not: a check that trusted them
    # believed the block ended before the shell line
    for name, char in [("vt", "\v"), ("ff", "\f"), ("fs", "\x1c"), ("cr", "\r"), ("nel", "\u0085"),
                       ("ls", "\u2028"), ("us", "\x1f"), ("nbsp", "\u00a0")]:
        doors[f"line-break-{name}"] = {"main.cir": f"* t\n{CIRCUIT}.control\n* x{char}.endc\nshell touch {m}\n"
                                                   ".endc\n.end\n"}
    return doors


DOORS = sorted(_doors(Path("m"), Path("so")))


def _deck(tmp_path: Path, door: str) -> tuple[Path, Path]:
    """The attack deck ``door`` in its own folder; returns (main.cir, marker)."""
    marker = tmp_path / "marker"
    so = tmp_path / "evil.so"
    if "codemodel" in door:
        if shutil.which("cc") is None:
            pytest.skip("no C compiler to build the code-model library")
        (tmp_path / "evil.c").write_text(EVIL_C)
        subprocess.run(["cc", "-shared", "-fPIC", f'-DMARKER="{marker}"', str(tmp_path / "evil.c"), "-o", str(so)],
                       check=True)
    folder = tmp_path / "deck"
    for name, text in _doors(marker, so)[door].items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{folder}", str(folder)), newline="")
    return folder / "main.cir", marker


def _left_a_mark(marker: Path) -> bool:
    return any(p.name.startswith(marker.name) for p in marker.parent.iterdir())


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.ngspice
def test_every_door_is_refused_and_is_real(door, tmp_path, monkeypatch):
    main, marker = _deck(tmp_path, door)
    with pytest.raises(UnsafeNetlistError, match=r"line \d+: .* is refused; .*--allow-control"):
        run_file(main)
    assert not _left_a_mark(marker)
    monkeypatch.setenv(sandbox.ENV_VAR, "off")  # the attack works when it is trusted and not confined
    try:
        run_file(main, timeout=60, allow_control=True)
    except SpiceError:
        pass  # several attacks leave ngspice without a circuit or a raw file; the mark is what counts
    assert _left_a_mark(marker)


@needs_sandbox
@pytest.mark.parametrize("door", ["include", "star-hash", "alias", "codemodel", "redirect", "rawfile-write",
                                  "mdump", "gnuplot", "ng_script"])
@pytest.mark.ngspice
def test_the_sandbox_confines_an_allowed_deck(door, tmp_path, monkeypatch):
    monkeypatch.setenv(sandbox.ENV_VAR, "require")
    main, marker = _deck(tmp_path, door)
    try:
        run_file(main, timeout=60, allow_control=True)
    except SpiceError:
        pass
    assert not _left_a_mark(marker)


def test_the_cli_refuses_naming_file_line_and_option(tmp_path):
    main, marker = _deck(tmp_path, "include")
    result = memspice("simulate", str(main))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{main.parent / 'evil.inc'}, line 1: a .control block" in result.stderr
    assert "--allow-control" in result.stderr and not marker.exists()


@needs_sandbox
@pytest.mark.ngspice
def test_the_cli_with_allow_control_in_the_sandbox_cannot_write_outside(tmp_path):
    main, marker = _deck(tmp_path, "star-hash")
    result = memspice("simulate", str(main), "--allow-control", "--sandbox", "require")
    assert result.returncode == 0, result.stderr
    assert "ngspice runs sandboxed" in result.stderr and not marker.exists()


def test_includes_are_followed_and_resolved(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.lib").write_text(".include b.inc\n")  # relative to the including file
    (tmp_path / "lib" / "b.inc").write_text(".lib c.lib typ\n")
    (tmp_path / "lib" / "c.lib").write_text(".lib typ\nR9 x 0 1\n.endl typ\n")  # '.lib typ' opens a section
    main = tmp_path / "main.cir"
    main.write_text(f"* t\n{CIRCUIT}.INCLUDE 'lib/a.lib' $ a comment\n.end\n")
    inputs = netlist_files(main, tmp_path / "run")
    assert inputs.files == [main, *(tmp_path / "lib" / n for n in ("a.lib", "b.inc", "c.lib"))]


def test_an_include_that_cannot_be_checked_is_refused(tmp_path, monkeypatch):
    main = tmp_path / "main.cir"
    main.write_text(f"* t\n{CIRCUIT}.include nowhere.inc\n.end\n")
    with pytest.raises(UnsafeNetlistError, match="line 5: included file 'nowhere.inc' not found"):
        netlist_files(main, tmp_path)
    main.write_text(f"* t\n{CIRCUIT}.include /dev/zero\n.end\n")  # would never end
    with pytest.raises(UnsafeNetlistError, match="'/dev/zero' is not a regular file"):
        netlist_files(main, tmp_path)
    monkeypatch.delenv("MEMSPICE_NO_SUCH_VARIABLE", raising=False)
    main.write_text(f"* t\n{CIRCUIT}.include $MEMSPICE_NO_SUCH_VARIABLE/x.lib\n.end\n")
    with pytest.raises(UnsafeNetlistError, match="not found"):
        netlist_files(main, tmp_path)


def test_include_paths_with_environment_variables(tmp_path, monkeypatch):
    (tmp_path / "pdk").mkdir()
    (tmp_path / "pdk" / "m.lib").write_text("*# shell id\n")
    monkeypatch.setenv("MY_PDK", str(tmp_path / "pdk"))
    main = tmp_path / "main.cir"
    main.write_text(f"* t\n{CIRCUIT}.include $MY_PDK/m.lib\n.end\n")
    with pytest.raises(UnsafeNetlistError, match=r"m\.lib, line 1: a '\*#' line"):
        netlist_files(main, tmp_path)
    assert netlist_files(main, tmp_path, allow_control=True).variables == {"MY_PDK"}


@needs_sandbox
@pytest.mark.ngspice
def test_the_sandbox_shows_ngspice_only_the_netlists_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(sandbox.ENV_VAR, "require")
    main = tmp_path / "deck" / "main.cir"
    main.parent.mkdir()
    main.write_text(f"* t\n{CIRCUIT}.include /etc/passwd\n.end\n")
    with pytest.raises(UnsafeNetlistError, match="/etc/passwd, outside the folders the sandbox shows ngspice"):
        run_file(main)
    # the example netlists include ../models/*.lib, which the sandbox shows
    plot = run_file(NETLISTS_DIR / "crossbar_2x2.cir")[-1]
    assert "time" in plot.variables


@pytest.mark.ngspice
def test_sandbox_require_fails_clearly_without_bubblewrap(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ngspice").symlink_to(shutil.which("ngspice"))  # ngspice, but no bwrap on PATH
    env = {**os.environ, "PATH": str(bin_dir)}
    netlist = tmp_path / "rc.cir"
    netlist.write_text(f"* rc\n{CIRCUIT}.end\n")
    run = [sys.executable, "-m", "memspice", "simulate", str(netlist)]
    result = subprocess.run([*run, "--sandbox", "require"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "the ngspice sandbox is required" in result.stderr
    assert "bubblewrap is not installed" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ngspice runs without a sandbox: bubblewrap is not installed" in result.stderr
    env[sandbox.ENV_VAR] = "sometimes"
    result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "MEMSPICE_SANDBOX='sometimes' is not a sandbox mode" in result.stderr


def test_the_shared_library_runner_denies_control_and_works_in_a_private_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.inc").write_text(".control\nshell touch marker\n.endc\n")
    with pytest.raises(UnsafeNetlistError, match="is refused"):
        run_shared(f"* t\n{CIRCUIT}.control\nshell touch marker\n.endc\n.end\n")
    with pytest.raises(UnsafeNetlistError, match="not found"):  # relative includes resolve in its own folder
        run_shared(f"* t\n{CIRCUIT}.include evil.inc\n.end\n")
    with pytest.raises(UnsafeNetlistError, match=r"evil\.inc, line 1: a \.control block"):
        run_shared(f"* t\n{CIRCUIT}.include {tmp_path / 'evil.inc'}\n.end\n")
    plot = run_shared(f"* t\n{CIRCUIT}.control\nrun\nwrdata out.txt v(a)\n.endc\n.end\n", allow_control=True)[-1]
    assert "time" in plot.variables
    assert os.getcwd() == str(tmp_path) and sorted(p.name for p in tmp_path.iterdir()) == ["evil.inc"]


SLOW = "* slow\nV1 a 0 SIN(0 1 1e6)\nR1 a 0 1k\n.tran 1e-12 1 0 1e-12\n.end\n"


def _ngspice_running(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (ngspice's or bwrap's)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if Path(argv[0]).name in ("ngspice", "bwrap") and any(text in arg for arg in argv):
            found.append(" ".join(argv))
    return found


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.ngspice
def test_an_interrupt_kills_ngspice_and_removes_its_run_folder(tmp_path, signum, status):
    """The signal goes to memspice only, as a terminal's Ctrl-C does (ngspice has its own
    process group): memspice must stop ngspice itself."""
    netlist = tmp_path / "slow.cir"
    netlist.write_text(SLOW)
    runs = tmp_path / "tmp"
    runs.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "memspice", "simulate", str(netlist)], env={
        **os.environ, "TMPDIR": str(runs)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 60
    while not _ngspice_running(str(netlist)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ngspice_running(str(netlist)) and list(runs.iterdir()), "ngspice did not start"
    start = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status and time.monotonic() - start < 5
    assert err.strip().splitlines()[-1].startswith("memspice: interrupted") and "Traceback" not in err
    assert not _ngspice_running(str(netlist)) and not list(runs.iterdir())
