"""The MQTT part of a deployment directory: what Mosquitto, the bridge and each device need.

::

    mosquitto/      mounted read-only at /mosquitto/secrets (deploy/compose.yaml), given to the broker's
                    user (Plan.mosquitto_uid) when deploy init runs as root
      server.crt server.key   Mosquitto's TLS certificate (the names in --hosts) and its key (0600)
      ca.crt                  the deployment's CA
      passwords               Mosquitto's password file ($7$ hashes; 0600)
      acl                     who may read and write which topics (edgebridge.deploy.mosquitto_acl)
      health/mosquitto_sub    options of compose's health check: the health user and its password (0600)
    env/bridge.env            the bridge's MQTT URL, CA file, users and passwords (0600); with
                              --bridges N, env/bridge-2.env ... for the other replicas
    devices/<id>/             what device <id> installs:
      ca.crt                  the CA (at device_ca_file)
      mqtt-password           its password (0600): /etc/edge-agent/mqtt-password, which the agent's unit
                              hands over as the systemd credential mqtt-password
      agent.toml              device_id and the [mqtt] lines of its agent.toml: URL, username, ca_file

A device's username is its device id. Adding a device writes its folder and one line of the password
file (the ACL's %u patterns already cover it); rotating a password rewrites the same files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from edgebridge.deploy import mosquitto_passwords as passwords
from edgebridge.deploy.files import PUBLIC, SECRET, replace, write_new
from edgebridge.deploy.init import Build, DeployError, Plan, env_name, read_plan
from edgebridge.deploy.mosquitto_acl import HEALTH_USER, acl_text, bridge_users
from edgebridge.deploy.pki import issue
from edgebridge.envelope import is_deviceid

__all__ = ["add_devices", "check_devices", "init", "rotate"]

RESERVED_PREFIXES = ("bridge-uplink-", "bridge-downlink-")  # the bridge's users, for any replica count
CONTAINER_SECRETS = "/mosquitto/secrets"  # where compose mounts DIR/mosquitto
HEALTH_CONFIG = Path("health", "mosquitto_sub")  # read by mosquitto_sub with XDG_CONFIG_HOME=.../health


def check_devices(ids: Iterable[str], existing: Iterable[str]) -> list[str]:
    """``ids`` as a list when each can be a device's MQTT username and is new; DeployError otherwise."""
    seen: set[str] = set(existing)
    out: list[str] = []
    for device in ids:
        if not is_deviceid(device):
            raise DeployError(f"device id {device!r}: 1 to 128 printable characters, no space, '/', '+' or "
                              "'#', not '.' or '..'")
        if ":" in device:
            raise DeployError(f"device id {device!r}: ':' cannot be in a Mosquitto username")
        if device.startswith(RESERVED_PREFIXES) or device == HEALTH_USER:
            raise DeployError(f"device id {device!r}: {HEALTH_USER!r} and names starting with "
                              f"{' or '.join(RESERVED_PREFIXES)} are the deployment's own MQTT users")
        if device in seen:
            raise DeployError(f"device id {device!r} is there twice, or already has credentials "
                              "(renew its password with `edgebridge deploy rotate`)")
        seen.add(device)
        out.append(device)
    if not out:
        raise DeployError("no device ids given (--devices or --devices-file)")
    return out


def _owner(plan: Plan) -> int | None:
    """The uid for Mosquitto's files: its user's when we may give files away (root), else ours."""
    return plan.mosquitto_uid if os.geteuid() == 0 else None


def init(build: Build) -> None:
    plan, root, ca = build.plan, build.root, build.ca
    owner = _owner(plan)
    folder = root / "mosquitto"
    folder.mkdir(mode=0o700)
    if owner is not None:
        os.chown(folder, owner, owner)
    server = issue(ca, "mosquitto", plan.server_hosts)
    write_new(folder / "server.crt", server.cert_pem, PUBLIC, owner)
    write_new(folder / "server.key", server.key_pem, SECRET, owner)
    write_new(folder / "ca.crt", ca.cert_pem, PUBLIC, owner)
    users: dict[str, str] = {}
    bridges = bridge_users(plan.bridges)
    for replica in bridges:
        env = build.env_file(env_name("bridge", replica.replica))
        env["EDGEBRIDGE_MQTT_URL"] = plan.bridge_url
        env["EDGEBRIDGE_MQTT_CA_FILE"] = plan.cloud_ca_file
        env["EDGEBRIDGE_MQTT_TOPIC_PREFIX"] = plan.topic_prefix
        for user, var in ((replica.uplink, "UPLINK"), (replica.downlink, "DOWNLINK")):
            password = passwords.new_password()
            users[user] = passwords.hash_password(password)
            env[f"EDGEBRIDGE_{var}_CLIENT_ID"] = user
            env[f"EDGEBRIDGE_{var}_USERNAME"] = user
            env[f"EDGEBRIDGE_{var}_PASSWORD"] = password
        if plan.bridges > 1:
            # replicas split the devices' messages (MQTT 5 shared subscription), none gets them all
            env["EDGEBRIDGE_UPLINK_SHARE_GROUP"] = "bridges"
    users[HEALTH_USER] = passwords.hash_password(_write_health(folder, None, owner))
    for device in plan.devices:
        users[device] = passwords.hash_password(_write_device(root, plan, ca.cert_pem, device, new=True))
    write_new(folder / "passwords", passwords.render(users), SECRET, owner)
    write_new(folder / "acl", acl_text(plan.topic_prefix, bridges), PUBLIC, owner)


def _write_health(folder: Path, password: str | None, owner: int | None) -> str:
    """Write (``password`` None: a new one) or renew the health check's mosquitto_sub options."""
    password = password or passwords.new_password()
    # one option and its value a line, as mosquitto_sub reads its config file; the TLS name checked is
    # 127.0.0.1, always in the server certificate
    text = (f"-h 127.0.0.1\n-p 8883\n--cafile {CONTAINER_SECRETS}/ca.crt\n"
            f"-u {HEALTH_USER}\n-P {password}\n")
    path = folder / HEALTH_CONFIG
    if path.exists():
        replace(path, text, SECRET, owner)
    else:
        path.parent.mkdir(mode=0o700)
        if owner is not None:
            os.chown(path.parent, owner, owner)
        write_new(path, text, SECRET, owner)
    return password


def _toml_string(value: str) -> str:
    # json escapes '"', '\\' and control characters as TOML basic strings do; a device id has no
    # control character and no lone surrogate (is_deviceid), so ensure_ascii=False leaves valid TOML
    return json.dumps(value, ensure_ascii=False)


def _write_device(root: Path, plan: Plan, ca_pem: bytes, device: str, *, new: bool) -> str:
    """Write (``new``) or renew device ``device``'s folder with a fresh password; return the password."""
    folder = root / "devices" / device
    password = passwords.new_password()
    if new:
        write_new(folder / "ca.crt", ca_pem, PUBLIC)
        write_new(folder / "agent.toml", (
            f"# Written by `edgebridge deploy init` for device {device}: merge into its agent.toml.\n"
            "# The password is not here: mqtt-password goes to /etc/edge-agent/mqtt-password, which the\n"
            "# unit hands to the agent as the systemd credential mqtt-password (docs/deploy.md).\n"
            f"device_id = {_toml_string(device)}\n\n"
            "[mqtt]\n"
            f"url = {_toml_string(plan.device_url)}\n"
            f"username = {_toml_string(device)}\n"
            f"ca_file = {_toml_string(plan.device_ca_file)}\n"
            f"topic_prefix = {_toml_string(plan.topic_prefix)}\n"
        ), PUBLIC)
        write_new(folder / "mqtt-password", password + "\n", SECRET)
    else:
        replace(folder / "mqtt-password", password + "\n", SECRET)
    return password


def _password_file(out: Path) -> tuple[Path, dict[str, str]]:
    path = out / "mosquitto" / "passwords"
    try:
        return path, passwords.parse(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeployError(f"{path}: unreadable ({exc})") from None


def add_devices(out: Path, ids: Iterable[str]) -> list[str]:
    """Give new devices their credentials in an existing deployment directory; nothing else changes.

    The password file is replaced last and in one rename: until then the broker knows none of the new
    devices, afterwards (once reloaded: SIGHUP) all of them.
    """
    plan = read_plan(out)
    path, users = _password_file(out)
    folders = out / "devices"
    existing = set(users) | ({p.name for p in folders.iterdir()} if folders.is_dir() else set())
    added = check_devices(ids, existing)
    ca_pem = (out / "ca.crt").read_bytes()
    try:
        for device in added:
            users[device] = passwords.hash_password(_write_device(out, plan, ca_pem, device, new=True))
        replace(path, passwords.render(users), SECRET, _owner(plan))
    except BaseException:
        for device in added:  # the broker never heard of them: leave no folder that says otherwise
            shutil.rmtree(folders / device, ignore_errors=True)
        raise
    return added


def rotate(out: Path, names: Iterable[str]) -> list[str]:
    """New passwords for the named devices, bridge users or health user; every other secret stays."""
    plan = read_plan(out)
    path, users = _password_file(out)
    rotated = list(dict.fromkeys(names))
    bridge_env = {u: (r.replica, link) for r in bridge_users(plan.bridges)
                  for u, link in ((r.uplink, "UPLINK"), (r.downlink, "DOWNLINK"))}
    for name in rotated:
        if name not in users:
            raise DeployError(f"{name!r} has no credentials in {out} (add a device with add-devices)")
    for name in rotated:
        if name in bridge_env:
            replica, link = bridge_env[name]
            password = passwords.new_password()
            _set_env(out / "env" / f"{env_name('bridge', replica)}.env", f"EDGEBRIDGE_{link}_PASSWORD",
                     password)
        elif name == HEALTH_USER:
            password = _write_health(out / "mosquitto", passwords.new_password(), _owner(plan))
        else:
            password = _write_device(out, plan, b"", name, new=False)
        users[name] = passwords.hash_password(password)
    replace(path, passwords.render(users), SECRET, _owner(plan))
    return rotated


def _set_env(path: Path, name: str, value: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
    if len(found) != 1:
        raise DeployError(f"{path}: expected one {name}= line, found {len(found)}")
    lines[found[0]] = f"{name}={value}\n"
    replace(path, "".join(lines), SECRET)
