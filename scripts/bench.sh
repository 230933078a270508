#!/bin/sh
# Runs the handshake benchmarks side by side in one run and prints ratio
# tables with benchstat (each column against the first, "plain" or
# "static").
#
#   scripts/bench.sh                     # short: about 5 minutes on 2 cores
#   ATLS_BENCH_FULL=1 scripts/bench.sh   # the gcp scenarios with >= 60 s of load each
#
# Environment:
#   COUNT      runs of each single-client benchmark (default 6)
#   LOAD_N     handshakes per serial-8ms load scenario (default 640: 10 per client)
#   GCP_N      handshakes per gcp load scenario in the short run (default 128)
#   ONLY       "single" or "load" to run only that set (default: both)
#   OUT        directory for the raw outputs (default: a new temporary one)
#   BENCHSTAT  the benchstat binary (default: found or installed)
set -eu

cd "$(dirname "$0")/.."
COUNT=${COUNT:-6}
LOAD_N=${LOAD_N:-640}
GCP_N=${GCP_N:-128}
FULL=${ATLS_BENCH_FULL:-0}
ONLY=${ONLY:-}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

if [ -z "${BENCHSTAT:-}" ]; then
	BENCHSTAT=$(command -v benchstat || true)
	gobin=$(go env GOPATH)/bin/benchstat
	if [ -z "$BENCHSTAT" ] && [ -x "$gobin" ]; then
		BENCHSTAT=$gobin
	fi
	if [ -z "$BENCHSTAT" ]; then
		echo "bench.sh: installing benchstat" >&2
		go install golang.org/x/perf/cmd/benchstat@latest
		BENCHSTAT=$gobin
	fi
fi

echo "bench.sh: raw results in $OUT" >&2
{
	echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(go version) GOMAXPROCS=$(nproc) git $(git rev-parse --short HEAD 2>/dev/null || echo -)"
	uptime
} >"$OUT/machine.txt"

# The test binaries, built once.
go test -c -o "$OUT/atls.test" ./atls/
go test -c -o "$OUT/atlsquic.test" ./atls/atlsquic/

# Single client, TCP and QUIC. Each round runs every variant once, so that
# the load of a shared machine hits every variant alike (-count would run
# one variant COUNT times in a row).
: >"$OUT/single.raw"
: >"$OUT/parts.raw"
i=0
[ "$ONLY" = load ] && i=$COUNT
while [ "$i" -lt "$COUNT" ]; do
	i=$((i + 1))
	echo "bench.sh: single-client round $i of $COUNT" >&2
	"$OUT/atls.test" -test.run '^$' -test.bench '^BenchmarkHandshake$' -test.benchmem | tee -a "$OUT/single.raw"
	"$OUT/atlsquic.test" -test.run '^$' -test.bench '^BenchmarkQUICHandshake$' -test.benchmem | tee -a "$OUT/single.raw"
	"$OUT/atls.test" -test.run '^$' -test.bench '^BenchmarkParts$' | tee -a "$OUT/parts.raw"
done

# 64 clients under the secure-processor profiles.
: >"$OUT/load.raw"
if [ "$ONLY" != single ]; then
	"$OUT/atls.test" -test.run '^$' -test.bench '^BenchmarkLoad$/^sp=serial-8ms$' -test.benchtime "${LOAD_N}x" \
		-test.timeout 60m | tee "$OUT/load.raw"
	if [ "$FULL" = 1 ]; then
		# At least a minute of load per gcp scenario, whatever b.N.
		ATLS_BENCH_FULL=1 "$OUT/atls.test" -test.run '^$' -test.bench '^BenchmarkLoad$/^sp=gcp$' -test.benchtime 1x \
			-test.timeout 60m | tee -a "$OUT/load.raw"
	else
		"$OUT/atls.test" -test.run '^$' -test.bench '^BenchmarkLoad$/^sp=gcp$' -test.benchtime "${GCP_N}x" \
			-test.timeout 60m | tee -a "$OUT/load.raw"
	fi
fi

# One table per metric: a row per transport, a column per variant.
sed -E \
	-e 's#^BenchmarkHandshake/([^ 	]+)-([0-9]+)#BenchmarkHandshake/transport=tcp/variant=\1-\2#' \
	-e 's#^BenchmarkQUICHandshake/([^ 	]+)-([0-9]+)#BenchmarkHandshake/transport=quic/variant=\1-\2#' \
	-e '/^(pkg|PASS|ok)/d' \
	"$OUT/single.raw" >"$OUT/single.txt"
grep -Ev '^(pkg|PASS|ok)' "$OUT/load.raw" >"$OUT/load.txt" || true

# ratios turns benchstat's CSV into one table per unit: the median of
# each column and its ratio to the first column's.
ratios() {
	awk -F, '
	function flush() { names = ""; units = "" }
	/^$/ { print ""; flush(); next }
	/^(goos|goarch|cpu|pkg):/ { next }
	names == "" { n = split($0, names_, ","); names = $0; next }
	units == "" {
		split($0, units_, ",")
		units = $0
		line = sprintf("%-12s", units_[2])
		for (i = 2; i <= n; i++) if (names_[i] != "") line = line sprintf(" %22s", names_[i])
		print line
		next
	}
	$1 == "geomean" { next }
	{
		line = sprintf("%-12s", $1)
		base = $2
		for (i = 2; i <= n; i++) {
			if (names_[i] == "") continue
			if ($i == "") { line = line sprintf(" %22s", "-"); continue }
			r = (base != "" && base + 0 != 0) ? sprintf("%.2fx", $i / base) : "-"
			line = line sprintf(" %14.4g (%5s)", $i, r)
		}
		print line
	}'
}

if [ "$ONLY" != load ]; then
	echo
	echo "## Single client: median, and ratio to the first column (plain TLS 1.3, self-signed, InsecureSkipVerify)"
	"$BENCHSTAT" -format csv -row /transport -col /variant "$OUT/single.txt" 2>/dev/null | ratios
	echo "## What a nonce handshake adds to a plain one, measured alone"
	"$BENCHSTAT" "$OUT/parts.raw"
fi
if [ "$ONLY" != single ]; then
	echo
	echo "## 64 clients, one new connection and request each: median, and ratio to static"
	"$BENCHSTAT" -format csv -row /sp -col /server "$OUT/load.txt" 2>/dev/null | ratios
fi
echo
echo "## benchstat (confidence intervals; vs base in percent)"
[ "$ONLY" = load ] || "$BENCHSTAT" -row /transport -col /variant "$OUT/single.txt"
[ "$ONLY" = single ] || "$BENCHSTAT" -row /sp -col /server "$OUT/load.txt"
