"""The package's surface: the README's three lines, the stubs, threads and the GIL."""

from __future__ import annotations

import ast
import threading
import time

import pyarrow as pa

import abkit
from abkit import _abkit

from conftest import PYTHON_DIR, REPO

DEMO = REPO / "sdk" / "src" / "bin" / "abkit" / "demo.toml"


def test_the_readme_three_lines_give_the_services_answer():
    sdk = abkit.Sdk.from_file(DEMO)
    a = sdk.assign("checkout_button", "user-42", {"country": "US"})
    assert a.variant in sdk.variants("checkout_button") and a.reason == "assigned" and a.enrolled
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert 'sdk = abkit.Sdk.from_file("abkit.toml")' in readme
    assert 'sdk.assign("checkout_button", "user-42", {"country": "US"})' in readme


def test_the_stubs_declare_what_the_package_exports():
    stub = ast.parse((PYTHON_DIR / "python" / "abkit" / "__init__.pyi").read_text(encoding="utf-8"))
    declared = {n.name for n in stub.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    declared |= {a.asname or a.name for n in stub.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert set(abkit.__all__) <= declared
    sdk_stub = next(n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "Sdk")
    for method in (n.name for n in sdk_stub.body if isinstance(n, ast.FunctionDef)):
        assert hasattr(abkit.Sdk, method), method
    ext = ast.parse((PYTHON_DIR / "python" / "abkit" / "_abkit.pyi").read_text(encoding="utf-8"))
    for node in ext.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            assert hasattr(_abkit, node.name), node.name
    for name in abkit.__all__:
        assert getattr(abkit, name).__doc__, f"{name} has no docstring"


def test_answers_do_not_depend_on_the_thread_count():
    sdk = abkit.Sdk.from_file(DEMO)
    ids = [f"user-{i}" for i in range(100_000)]
    base = sdk.assign_many("checkout_button", ids, {"country": "US"}, now_ms=1)
    for threads in (1, 3, 0):
        r = sdk.assign_many("checkout_button", ids, {"country": "US"}, now_ms=1, threads=threads)
        assert (r.variant == base.variant).all() and (r.reason == base.reason).all()


def test_assign_many_releases_the_gil_while_it_assigns():
    sdk = abkit.Sdk.from_file(DEMO)
    ids = pa.array([f"user-{i}" for i in range(3_000_000)])
    call: list[float] = []

    def work() -> None:
        start = time.perf_counter()
        sdk.assign_many("checkout_button", ids, {"country": "US"}, now_ms=1, threads=1, output="arrow")
        call.append(time.perf_counter() - start)

    longest_gap, last = 0.0, time.perf_counter()
    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        now = time.perf_counter()
        longest_gap, last = max(longest_gap, now - last), now
    t.join()
    # Almost all of the call is Rust work: holding the GIL through it would stop this loop
    # for most of the call; released, the loop only waits for the short Python parts.
    assert longest_gap < 0.5 * call[0], f"the main thread stalled {longest_gap:.3f} s of a {call[0]:.3f} s call"


def _assign_in_child(queue) -> None:  # runs in a forked child
    sdk = abkit.Sdk.from_file(DEMO)
    r = sdk.assign_many("checkout_button", [f"user-{i}" for i in range(50_000)], {"country": "US"}, now_ms=1)
    queue.put(list(r.variant[:100]))


def test_assign_many_works_in_a_forked_child_after_the_parent_used_it():
    import multiprocessing

    sdk = abkit.Sdk.from_file(DEMO)
    ids = [f"user-{i}" for i in range(50_000)]
    expected = list(sdk.assign_many("checkout_button", ids, {"country": "US"}, now_ms=1).variant[:100])
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_assign_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():  # the parent's worker threads do not exist in the child
        child.kill()
        raise AssertionError("assign_many hung in a forked child")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == expected
