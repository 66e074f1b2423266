"""The MQTT part of a deployment directory: what Mosquitto, the bridge and each device need.

::

    mosquitto/      mounted read-only at /mosquitto/secrets (deploy/mosquitto/mosquitto.conf)
      server.crt server.key   Mosquitto's TLS certificate (the names in --hosts) and its key (0600)
      ca.crt                  the deployment's CA
      passwords               Mosquitto's password file ($7$ hashes; 0600)
      acl                     who may read and write which topics (edgebridge.deploy.mosquitto_acl)
    bridge/ca.crt   the CA the bridge checks Mosquitto's certificate with (mounted at cloud_secrets_dir)
    env/bridge-N.env          replica N's MQTT URL, CA file, users and passwords (0600)
    devices/<id>/             what device <id> installs:
      ca.crt                  the CA (at device_ca_file)
      mqtt-password           its password (0600)
      agent.toml              the [mqtt] lines of its agent.toml: mqtts URL, username, ca_file
      agent.env               EDGEBRIDGE_MQTT_PASSWORD=... for systemd's EnvironmentFile= (0600)

A device's username is its device id. Adding a device writes its folder and one line of the password
file (the ACL's %u patterns already cover it); rotating a password rewrites the same files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from edgebridge.deploy import mosquitto_passwords as passwords
from edgebridge.deploy.files import PUBLIC, SECRET, replace, write_new
from edgebridge.deploy.init import Build, DeployError, Plan, read_plan
from edgebridge.deploy.mosquitto_acl import BridgeUsers, acl_text, bridge_users
from edgebridge.deploy.pki import issue
from edgebridge.envelope import is_deviceid

__all__ = ["add_devices", "check_devices", "init", "rotate"]

RESERVED_PREFIXES = ("bridge-uplink-", "bridge-downlink-")  # the bridge's users, for any replica count


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
        if device.startswith(RESERVED_PREFIXES):
            raise DeployError(f"device id {device!r}: names starting with {' or '.join(RESERVED_PREFIXES)} "
                              "are the bridge's MQTT users")
        if device in seen:
            raise DeployError(f"device id {device!r} is there twice, or already has credentials "
                              "(renew its password with `edgebridge deploy rotate`)")
        seen.add(device)
        out.append(device)
    if not out:
        raise DeployError("no device ids given (--devices or --devices-file)")
    return out


def init(build: Build) -> None:
    plan, root, ca = build.plan, build.root, build.ca
    server = issue(ca, "mosquitto", plan.hosts)
    write_new(root / "mosquitto" / "server.crt", server.cert_pem, PUBLIC)
    write_new(root / "mosquitto" / "server.key", server.key_pem, SECRET)
    write_new(root / "mosquitto" / "ca.crt", ca.cert_pem, PUBLIC)
    write_new(root / "bridge" / "ca.crt", ca.cert_pem, PUBLIC)
    users: dict[str, str] = {}
    bridges = bridge_users(plan.bridges)
    for replica in bridges:
        for user, var in ((replica.uplink, "UPLINK"), (replica.downlink, "DOWNLINK")):
            password = passwords.new_password()
            users[user] = passwords.hash_password(password)
            env = build.env_file(f"bridge-{replica.replica}")
            env[f"EDGEBRIDGE_{var}_CLIENT_ID"] = user
            env[f"EDGEBRIDGE_{var}_USERNAME"] = user
            env[f"EDGEBRIDGE_{var}_PASSWORD"] = password
        _bridge_env(build, replica)
    for device in plan.devices:
        users[device] = passwords.hash_password(_write_device(root, plan, ca.cert_pem, device, new=True))
    write_new(root / "mosquitto" / "passwords", passwords.render(users), SECRET)
    write_new(root / "mosquitto" / "acl", acl_text(plan.topic_prefix, bridges), PUBLIC)


def _bridge_env(build: Build, replica: BridgeUsers) -> None:
    plan = build.plan
    env = build.env_file(f"bridge-{replica.replica}")
    env["EDGEBRIDGE_MQTT_URL"] = plan.bridge_url
    env["EDGEBRIDGE_MQTT_CA_FILE"] = f"{plan.cloud_secrets_dir.rstrip('/')}/ca.crt"
    env["EDGEBRIDGE_MQTT_TOPIC_PREFIX"] = plan.topic_prefix
    if plan.bridges > 1:
        # replicas split the devices' messages (MQTT 5 shared subscription), none gets them all
        env["EDGEBRIDGE_UPLINK_SHARE_GROUP"] = "bridges"


def _toml_string(value: str) -> str:
    # json escapes '"', '\\' and control characters as TOML basic strings do; a device id has no
    # control character and no lone surrogate (is_deviceid), so ensure_ascii=False leaves valid TOML
    return json.dumps(value, ensure_ascii=False)


def _write_device(root: Path, plan: Plan, ca_pem: bytes, device: str, *, new: bool) -> str:
    """Write (``new``) or renew device ``device``'s folder with a fresh password; return the password."""
    folder = root / "devices" / device
    password = passwords.new_password()
    write = write_new if new else replace
    if new:
        write_new(folder / "ca.crt", ca_pem, PUBLIC)
        write_new(folder / "agent.toml", (
            f"# Written by `edgebridge deploy init` for device {device}: merge into its agent.toml.\n"
            "# The password is not here: agent.env (EDGEBRIDGE_MQTT_PASSWORD) gives it, see docs/deploy.md.\n"
            f"device_id = {_toml_string(device)}\n\n"
            "[mqtt]\n"
            f"url = {_toml_string(plan.device_url)}\n"
            f"username = {_toml_string(device)}\n"
            f"ca_file = {_toml_string(plan.device_ca_file)}\n"
            f"topic_prefix = {_toml_string(plan.topic_prefix)}\n"
        ), PUBLIC)
    write(folder / "mqtt-password", password + "\n", SECRET)
    write(folder / "agent.env", f"EDGEBRIDGE_MQTT_PASSWORD={password}\n", SECRET)
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
    ca_pem = (out / "ca" / "ca.crt").read_bytes()
    try:
        for device in added:
            users[device] = passwords.hash_password(_write_device(out, plan, ca_pem, device, new=True))
        replace(path, passwords.render(users), SECRET)
    except BaseException:
        for device in added:  # the broker never heard of them: leave no folder that says otherwise
            shutil.rmtree(folders / device, ignore_errors=True)
        raise
    return added


def rotate(out: Path, names: Iterable[str]) -> list[str]:
    """New passwords for the named devices and bridge users; every other secret stays as it is."""
    plan = read_plan(out)
    path, users = _password_file(out)
    rotated = list(dict.fromkeys(names))
    bridge_env = {u: (r, link) for r in bridge_users(plan.bridges)
                  for u, link in ((r.uplink, "UPLINK"), (r.downlink, "DOWNLINK"))}
    for name in rotated:
        if name not in users:
            raise DeployError(f"{name!r} has no credentials in {out} (add a device with add-devices)")
    for name in rotated:
        if name in bridge_env:
            replica, link = bridge_env[name]
            password = passwords.new_password()
            _set_env(out / "env" / f"bridge-{replica.replica}.env", f"EDGEBRIDGE_{link}_PASSWORD", password)
        else:
            password = _write_device(out, plan, b"", name, new=False)
        users[name] = passwords.hash_password(password)
    replace(path, passwords.render(users), SECRET)
    return rotated


def _set_env(path: Path, name: str, value: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
    if len(found) != 1:
        raise DeployError(f"{path}: expected one {name}= line, found {len(found)}")
    lines[found[0]] = f"{name}={value}\n"
    replace(path, "".join(lines), SECRET)
