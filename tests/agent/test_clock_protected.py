"""``clocksynced`` under the hardened unit: ``ProtectClock=yes`` makes the kernel refuse adjtimex(2) with
EPERM (a seccomp filter); the agent then reads systemd-timesyncd's flag file. The filter here is a real
one, loaded with libseccomp (the library systemd uses) into a child process, since it cannot be undone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = """
import ctypes, errno, sys
from edge_agent.clock import kernel_clock_synced

libc = ctypes.CDLL(None, use_errno=True)
timex = ctypes.create_string_buffer(512)
before = libc.adjtimex(timex)
if sys.argv[3] == "filter":
    seccomp = ctypes.CDLL("libseccomp.so.2")
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = seccomp.seccomp_init(0x7FFF0000)                      # SCMP_ACT_ALLOW
    eperm = 0x00050000 | errno.EPERM                            # SCMP_ACT_ERRNO(EPERM), as ProtectClock=
    # the read-only calls of systemd's @clock set (glibc's adjtimex() is clock_adjtime(CLOCK_REALTIME))
    for name in (b"adjtimex", b"clock_adjtime", b"clock_adjtime64"):
        number = seccomp.seccomp_syscall_resolve_name(name)
        if number >= 0:  # clock_adjtime64 exists on 32-bit ABIs only
            assert seccomp.seccomp_rule_add(ctx, eperm, number, 0) == 0
    assert seccomp.seccomp_load(ctx) == 0
ctypes.set_errno(0)
after = libc.adjtimex(timex)
err = ctypes.get_errno()
print(before >= 0, after, err, kernel_clock_synced(sys.argv[1]), kernel_clock_synced(sys.argv[2]))
"""


def _child(tmp_path: Path, mode: str) -> list[str]:
    flag = tmp_path / "synchronized"
    flag.write_text("")
    result = subprocess.run([sys.executable, "-c", CHILD, str(flag), str(tmp_path / "absent"), mode],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_refused_adjtimex_falls_back_to_the_timesyncd_flag(tmp_path: Path) -> None:
    works, after, err, with_flag, without_flag = _child(tmp_path, "filter")
    assert works == "True"  # adjtimex answered before the filter ...
    assert (after, err) == ("-1", "1")  # ... and the filter made it fail with EPERM: the fault happened
    assert (with_flag, without_flag) == ("True", "False")


def test_without_a_filter_the_kernel_answers_and_the_flag_is_not_read(tmp_path: Path) -> None:
    works, after, _err, with_flag, without_flag = _child(tmp_path, "none")
    assert works == "True" and int(after) >= 0
    assert with_flag == without_flag  # whatever the kernel says, the flag file changes nothing
    assert with_flag in ("True", "False")
