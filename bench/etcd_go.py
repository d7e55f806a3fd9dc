"""The Go load generator for `bench.etcd`: a `benchmark put` with the flags and the report of
etcd's own `tools/benchmark`, built offline against Debian's etcd 3.4 source.

Debian packages etcd 3.4.23's source (`golang-etcd-server-dev`, in /usr/share/gocode) with its
dependencies, but not `tools/benchmark`. So this module carries a small Go program of ours that
does what that tool's `put` does and prints what it prints, from the same packaged code:
`--conns` clientv3 clients (each balancing over all `--endpoints`, as the tool's are), shared
round-robin by `--clients` goroutines, each putting one request at a time until `--total` puts
were issued (a `--val-size` random value, a `--key-size` key holding the varint of the put's
number modulo `--key-space-size`, or a random one below it without `--sequential-keys`); each
put is timed and the summary is etcd's `pkg/report` (Requests/sec, latency percentiles). It
lacks the tool's progress bar, `--rate` and the other subcommands.

It is built once in GOPATH mode (GO111MODULE=off, GOPATH=<cache>/gopath:/usr/share/gocode, no
network) into `~/.cache/scfchain/etcd-benchmark/benchmark-<hash of the source>` and reused. As
root, missing Go or etcd source is installed with apt-get (`golang-go`,
`golang-etcd-server-dev`). An upstream `tools/benchmark` binary can be used instead
(`bench.etcd --benchmark PATH`): the flags and the report are the same.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

GOCODE = "/usr/share/gocode"
ETCD_SRC = os.path.join(GOCODE, "src", "go.etcd.io", "etcd", "clientv3")
APT_PACKAGES = ["golang-go", "golang-etcd-server-dev"]
PACKAGE = "scfchain/etcdbench"

GO_SOURCE = r"""// A put load generator for etcd v3 with the flags and the report of etcd's
// tools/benchmark `put` (not packaged by Debian). Written for scfchain's bench/etcd_go.py.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	mrand "math/rand"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/report"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}

func main() {
	global := flag.NewFlagSet("benchmark", flag.ExitOnError)
	endpoints := global.String("endpoints", "127.0.0.1:2379", "gRPC endpoints, comma-separated")
	conns := global.Uint("conns", 1, "gRPC connections (clientv3 clients)")
	clients := global.Uint("clients", 1, "concurrent clients")
	dialTimeout := global.Duration("dial-timeout", 0, "dial timeout")
	precise := global.Bool("precise", false, "full-precision figures in the report")
	sample := global.Bool("sample", false, "per-second samples in the report")
	global.Parse(os.Args[1:])
	rest := global.Args()
	if len(rest) == 0 || rest[0] != "put" {
		fail("usage: benchmark [--endpoints=..] [--conns=N] [--clients=N] put [put flags]")
	}
	put := flag.NewFlagSet("put", flag.ExitOnError)
	keySize := put.Int("key-size", 8, "key size of a put")
	valSize := put.Int("val-size", 8, "value size of a put")
	total := put.Int("total", 10000, "puts in all")
	keySpace := put.Int("key-space-size", 1, "distinct keys")
	seqKeys := put.Bool("sequential-keys", false, "sequential keys (else random ones)")
	put.Parse(rest[1:])
	if *keySpace <= 0 || *conns == 0 || *clients == 0 || *total <= 0 {
		fail("--key-space-size, --conns, --clients and --total must be positive")
	}
	if *keySize < binary.MaxVarintLen64 && *keySpace > 1<<(7*uint(*keySize)-1) {
		fail("--key-size %d cannot hold %d keys", *keySize, *keySpace)
	}

	eps := strings.Split(*endpoints, ",")
	pool := make([]*clientv3.Client, *conns)
	for i := range pool {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: *dialTimeout})
		if err != nil {
			fail("dial error: %v", err)
		}
		pool[i] = c
	}
	precision := "%4.4f"
	if *precise {
		precision = "%g"
	}
	var r report.Report
	if *sample {
		r = report.NewReportSample(precision)
	} else {
		r = report.NewReport(precision)
	}

	raw := make([]byte, *valSize)
	if _, err := rand.Read(raw); err != nil {
		fail("random value: %v", err)
	}
	value := string(raw)
	ops := make(chan clientv3.Op, *clients)
	done := r.Run()
	var wg sync.WaitGroup
	for i := uint(0); i < *clients; i++ {
		wg.Add(1)
		go func(c *clientv3.Client) {
			defer wg.Done()
			for op := range ops {
				start := time.Now()
				_, err := c.Do(context.Background(), op)
				r.Results() <- report.Result{Err: err, Start: start, End: time.Now()}
			}
		}(pool[i%*conns])
	}
	go func() {
		key := make([]byte, *keySize)
		for i := 0; i < *total; i++ {
			n := i % *keySpace
			if !*seqKeys {
				n = mrand.Intn(*keySpace)
			}
			binary.PutVarint(key, int64(n))
			ops <- clientv3.OpPut(string(key), value)
		}
		close(ops)
	}()
	wg.Wait()
	close(r.Results())
	fmt.Println(<-done)
	for _, c := range pool {
		c.Close()
	}
}
"""


class ToolUnavailable(RuntimeError):
    """The Go generator can be neither found nor built; the message says why."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scfchain" / "etcd-benchmark"


def binary_path() -> Path:
    """The cached binary, named by the source's hash so that a changed source is rebuilt."""
    digest = hashlib.sha256(GO_SOURCE.encode()).hexdigest()[:12]
    return cache_dir() / f"benchmark-{digest}"


def _install() -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ToolUnavailable("no Go toolchain or etcd source; install them: sudo apt-get "
                              f"install {' '.join(APT_PACKAGES)}")
    print(f"installing {' '.join(APT_PACKAGES)} (apt-get) ...", flush=True)
    done = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                           *APT_PACKAGES], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise ToolUnavailable(f"apt-get install {' '.join(APT_PACKAGES)} failed: "
                              f"{done.stderr.strip()[-500:]}")


def build(install: bool = True) -> Path:
    """The cached binary, built first if missing (installing Go and etcd's source as root)."""
    target = binary_path()
    if target.exists():
        return target
    if install and (not shutil.which("go") or not os.path.isdir(ETCD_SRC)):
        _install()
    go = shutil.which("go")
    if not go or not os.path.isdir(ETCD_SRC):
        raise ToolUnavailable(f"no `go` on PATH or no {ETCD_SRC} (Debian: "
                              f"{' '.join(APT_PACKAGES)})")
    root = cache_dir()
    src = root / "gopath" / "src" / PACKAGE
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.go").write_text(GO_SOURCE)
    scratch = target.with_name(target.name + f".tmp{os.getpid()}")
    env = {**os.environ, "GO111MODULE": "off", "GOFLAGS": "", "GOPROXY": "off",
           "GOPATH": f"{root / 'gopath'}:{GOCODE}", "GOCACHE": str(root / "gocache")}
    print(f"building etcd's put benchmark (Go, offline) into {target} ...", flush=True)
    done = subprocess.run([go, "build", "-o", str(scratch), PACKAGE], env=env,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        scratch.unlink(missing_ok=True)
        raise ToolUnavailable(f"go build {PACKAGE} failed:\n{done.stderr.strip()[-2000:]}")
    os.replace(scratch, target)
    return target


def find(explicit: str | None = None) -> Path | None:
    """A given binary, else the cached one; None when there is none (see `build`)."""
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolUnavailable(f"--benchmark {explicit}: not an executable file")
        return path
    cached = binary_path()
    return cached if cached.exists() else None


def command(binary: str | os.PathLike[str], endpoints: list[str], *, conns: int, clients: int,
            total: int, value_bytes: int, key_bytes: int = 8, key_space: int = 1,
            sequential: bool = True) -> list[str]:
    """The `benchmark put` command line (valid for upstream's tools/benchmark too)."""
    eps = ",".join(e.removeprefix("http://") for e in endpoints)
    put = [f"--key-size={key_bytes}", f"--val-size={value_bytes}", f"--total={total}",
           f"--key-space-size={key_space}"]
    if sequential:
        put.append("--sequential-keys")
    return [str(binary), f"--endpoints={eps}", f"--conns={conns}", f"--clients={clients}",
            "put", *put]


_NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
_SUMMARY = {key: re.compile(rf"^\s*{label}:\s+{_NUMBER}", re.M) for key, label in
            (("total_s", "Total"), ("slowest_s", "Slowest"), ("fastest_s", "Fastest"),
             ("average_s", "Average"), ("stddev_s", "Stddev"), ("rps", "Requests/sec"))}
_PERCENTILE = re.compile(rf"^\s*{_NUMBER}% in {_NUMBER} secs", re.M)
_BUCKET = re.compile(rf"^\s*{_NUMBER} \[([0-9]+)\]", re.M)
_ERROR = re.compile(r"^\s*\[([0-9]+)\]\s+(.*\S)\s*$")


def parse_output(text: str) -> dict[str, Any]:
    """etcd's `pkg/report` summary (as `benchmark put` prints it) -> figures: `rps`,
    `total_s` and the other summary seconds, `latency_ms` {"50": .., "99": ..}, `succeeded`
    (the histogram's count), `errors` {message: count} and `failed`."""
    figures: dict[str, Any] = {}
    for key, pattern in _SUMMARY.items():
        match = pattern.search(text)
        if match:
            figures[key] = float(match.group(1))
    errors: dict[str, int] = {}
    head, sep, tail = text.partition("Error distribution:")
    if sep:
        for line in tail.splitlines():
            match = _ERROR.match(line)
            if match:
                errors[match.group(2)] = errors.get(match.group(2), 0) + int(match.group(1))
    if "rps" not in figures:
        detail = f"; errors: {errors}" if errors else ""
        raise ValueError(f"no 'Requests/sec' in the benchmark's output{detail}")
    figures["latency_ms"] = {f"{float(p):g}": round(float(s) * 1000, 3)
                             for p, s in _PERCENTILE.findall(head)}
    figures["succeeded"] = sum(int(count) for _, count in _BUCKET.findall(head))
    figures["errors"] = errors
    figures["failed"] = sum(errors.values())
    return figures


def run(binary: str | os.PathLike[str], endpoints: list[str], *, conns: int, clients: int,
        total: int, value_bytes: int, key_space: int = 1, timeout_s: float = 3600,
        log_path: str | None = None) -> dict[str, Any]:
    """Runs `benchmark put` against the members and returns `bench.etcd`'s report fields."""
    argv = command(binary, endpoints, conns=conns, clients=clients, total=total,
                   value_bytes=value_bytes, key_space=key_space)
    print(" ".join(argv), flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if log_path:
        with open(log_path, "w") as handle:
            handle.write(f"$ {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    print(done.stdout.rstrip(), flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark put exited {done.returncode}: {done.stderr.strip()[-1000:]}")
    return report_fields(parse_output(done.stdout), argv, clients=clients, conns=conns,
                         value_bytes=value_bytes, key_space=key_space)


def report_fields(figures: dict[str, Any], argv: list[str], *, clients: int, conns: int,
                  value_bytes: int, key_space: int) -> dict[str, Any]:
    """Parsed figures -> the fields `bench.etcd` reports for either generator."""
    latency = figures["latency_ms"]
    return {"puts": figures["succeeded"], "failed": figures["failed"],
            "puts_per_s": round(figures["rps"], 1), "p50_ms": latency.get("50", 0.0),
            "p99_ms": latency.get("99", 0.0), "clients": clients, "conns": conns,
            "value_bytes": value_bytes, "key_space": key_space,
            "duration_s": figures.get("total_s", 0.0), "latency_ms": latency,
            "errors": figures["errors"], "command": " ".join(argv[1:])}
