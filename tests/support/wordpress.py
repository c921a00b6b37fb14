"""A real WordPress for the plugin's tests: Debian's ``wordpress`` package (copied to a temp dir
with the test's own ``wp-config.php``), MariaDB run as the test's own process with a temp data
dir, PHP's built-in server, and the installer, login, plugin activation and settings form driven
over HTTP like a browser would."""

from __future__ import annotations

import contextlib
import html
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import REPO, free_port

PLUGIN = REPO / "integrations" / "wordpress" / "simulcast-player"
DEBIAN_WORDPRESS = Path("/usr/share/wordpress")
ADMIN, PASSWORD = "admin", "a long test passphrase"
HAVE_WORDPRESS = (
    (DEBIAN_WORDPRESS / "wp-settings.php").exists()
    and (DEBIAN_WORDPRESS / "wp-content/themes/twentytwentyone").exists()
    and shutil.which("php") is not None
    and shutil.which("mariadbd") is not None
    and shutil.which("mariadb-install-db") is not None
)


def _wait(check: Any, within: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


class MariaDb:
    """``mariadbd`` on a temp data dir, reached by its socket."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.socket = base / "mariadb.sock"
        self.log = base / "mariadb.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        data = self.base / "data"
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--skip-test-db",
             "--auth-root-authentication-method=normal", *user],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={self.socket}",
             f"--port={free_port()}", "--bind-address=127.0.0.1", "--skip-log-bin",
             "--innodb-buffer-pool-size=32M", f"--pid-file={self.base / 'mariadb.pid'}",
             f"--log-error={self.log}", *user],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(self.socket.exists, 60, "mariadbd's socket", self.log)
        self.sql("CREATE DATABASE wordpress")

    def sql(self, statement: str) -> str:
        done = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-N",
             "-e", statement],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return done.stdout

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class WordPress:
    """Debian's WordPress served by ``php -S`` with the plugin installed (not yet activated)."""

    def __init__(self, base: Path, db: MariaDb) -> None:
        self.base = base
        self.db = db
        self.root = base / "wordpress"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / "php.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = httpx.Client(base_url=self.url, timeout=60, follow_redirects=True)

    def start(self) -> None:
        # Copied with the files its (relative) symlinks name: Debian links the bundled JavaScript
        # libraries to /usr/share/javascript, which a relative link in a copy would miss.
        shutil.copytree(DEBIAN_WORDPRESS, self.root, symlinks=False)
        (self.root / "wp-config.php").write_text(self._config())
        shutil.copytree(PLUGIN, self.root / "wp-content" / "plugins" / PLUGIN.name)
        (self.root / "wp-content" / "uploads").mkdir(exist_ok=True)
        env = {**os.environ, "PHP_CLI_SERVER_WORKERS": "4"}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                ["php", "-d", "display_errors=stderr", "-S", f"127.0.0.1:{self.port}",
                 "-t", str(self.root)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its workers are stopped with it, as one group
            )  # fmt: skip
        _wait(self._answers, 30, "php -S", self.log)
        self._install()
        self._login()

    def _answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(self.url + "/wp-includes/images/blank.gif", timeout=2)
            return True
        return False

    def _config(self) -> str:
        salts = "\n".join(
            f"define('{name}', '{secrets.token_hex(32)}');"
            for name in ("AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY",
                         "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT")
        )  # fmt: skip
        return f"""<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'root');
define('DB_PASSWORD', '');
define('DB_HOST', 'localhost:{self.db.socket}');
define('DB_CHARSET', 'utf8mb4');
define('WP_HOME', '{self.url}');
define('WP_SITEURL', '{self.url}');
define('WP_DEBUG', true);
define('WP_DEBUG_LOG', '{self.base / "debug.log"}');
define('WP_DEBUG_DISPLAY', false);
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('FS_METHOD', 'direct');
{salts}
$table_prefix = 'wp_';
if (!defined('ABSPATH')) {{ define('ABSPATH', __DIR__ . '/'); }}
require_once ABSPATH . 'wp-settings.php';
"""

    def _install(self) -> None:
        done = self.admin.post(
            "/wp-admin/install.php?step=2",
            data={
                "weblog_title": "Fan site",
                "user_name": ADMIN,
                "admin_password": PASSWORD,
                "admin_password2": PASSWORD,
                "pw_weak": "1",
                "admin_email": "admin@example.com",
                "blog_public": "0",
            },
        )
        assert done.status_code == 200 and "Success!" in done.text, done.text[-2000:]

    def _login(self) -> None:
        self.admin.cookies.set("wordpress_test_cookie", "WP Cookie check")
        done = self.admin.post(
            "/wp-login.php",
            data={"log": ADMIN, "pwd": PASSWORD, "wp-submit": "Log In", "testcookie": "1",
                  "redirect_to": f"{self.url}/wp-admin/"},
        )  # fmt: skip
        assert "wp-admin" in str(done.url) and "Dashboard" in done.text, done.text[-2000:]

    def activate_plugin(self) -> None:
        """Activate from the Plugins screen, following its nonce'd link."""
        page = self.admin.get("/wp-admin/plugins.php").text
        link = re.search(
            r'href="(plugins\.php\?action=activate&amp;plugin=simulcast-player[^"]+)"', page
        )
        assert link, "no activation link for the plugin"
        done = self.admin.get("/wp-admin/" + link.group(1).replace("&amp;", "&"))
        assert "Plugin activated" in done.text, done.text[-2000:]

    def settings_form(self) -> dict[str, str]:
        """The settings page's hidden fields (its nonce)."""
        page = self.admin.get("/wp-admin/options-general.php?page=simulcast-player").text
        fields = {}
        for tag in re.findall(r"<input[^>]*type=[\"']hidden[\"'][^>]*>", page):
            name = re.search(r"name=[\"']([^\"']+)", tag)
            value = re.search(r"value=[\"']([^\"']*)", tag)
            if name and value:
                fields[name.group(1)] = html.unescape(value.group(1))
        assert "_wpnonce" in fields, page[-2000:]
        return fields

    def save_settings(self, values: dict[str, str], *, nonce: bool = True) -> httpx.Response:
        """Submit the settings page's form (with its nonce unless told otherwise)."""
        form = self.settings_form()
        if not nonce:
            form.pop("_wpnonce")
        data = {**form, **{f"simulcast_player_options[{k}]": v for k, v in values.items()}}
        return self.admin.post("/wp-admin/options.php", data=data)

    def create_page(self, title: str, content: str) -> str:
        """Publish a page through the REST API (cookie + REST nonce); its URL."""
        nonce = self.admin.get("/wp-admin/admin-ajax.php", params={"action": "rest-nonce"}).text
        made = self.admin.post(
            "/",
            params={"rest_route": "/wp/v2/pages"},
            headers={"X-WP-Nonce": nonce},
            json={"title": title, "content": content, "status": "publish"},
        )
        assert made.status_code == 201, made.text
        return str(made.json()["link"])

    def stop(self) -> None:
        self.admin.close()
        if self.proc is not None and self.proc.poll() is None:
            # php -S forks PHP_CLI_SERVER_WORKERS workers that outlive a signal to the parent.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
