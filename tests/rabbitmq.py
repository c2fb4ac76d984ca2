"""A private RabbitMQ broker on loopback for the tests: Debian's rabbitmq-server run from a temporary directory.

Everything it writes (database, logs, Erlang cookie) lives under that directory, it listens on 127.0.0.1 on
free ports only, its own epmd runs on a private port, and stop() ends the broker and that epmd by their ids:
nothing is left running system-wide. Tests stop and start it to play a broker that goes down and comes back.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pika

from .dnsserver import free_port
from .postfix import wait_for

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "/usr/bin/epmd"
START_TIMEOUT = 90  # seconds; a cold start of the Erlang VM on a busy 2-core machine takes 5-20 s


class RabbitMQ:
    """One broker in `base`; `url` reaches it as the default guest user (allowed on loopback)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        base.mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
            "log.console = false\nlog.file.level = info\n"
        )
        (base / "enabled_plugins").write_text("[].\n")

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),  # the Erlang cookie
            "RABBITMQ_NODENAME": f"mwtest{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
        }

    def start(self) -> RabbitMQ:
        """Start the broker and wait until it takes AMQP connections (its data survives a stop and start)."""
        self.proc = subprocess.Popen([SERVER], env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=(self.base / "server.err").open("ab"), start_new_session=True)
        wait_for(self._accepting, START_TIMEOUT, f"RabbitMQ on port {self.port}\n{self.log()[-2000:]}", 0.25)
        return self

    def _accepting(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            pika.BlockingConnection(pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=1")).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def log(self) -> str:
        logs = sorted((self.base / "log").glob("*.log")) + [self.base / "server.err"]
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())

    def stop(self) -> None:
        """Stop the broker (its whole process group: the script, the VM, its port helpers)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        wait_for(lambda: not self._listening(), 20, "RabbitMQ to close its port")

    def _listening(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def destroy(self) -> None:
        """Stop the broker, then its epmd (started on our private port, so ours alone), and remove its files."""
        self.stop()
        subprocess.run([EPMD, "-port", str(self.epmd_port), "-kill"], env=self.env(), capture_output=True, timeout=10)
        time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)
