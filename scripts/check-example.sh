#!/usr/bin/env bash
# Checks what the demo and the soak show a person:
#   check-example.sh help EXAMPLE    `--help` prints the usage on stdout and
#                                    exits 0; an unknown option exits 2 with
#                                    the usage on stderr
#   check-example.sh summary FILE    in the summary of a run's output
#                                    (the lines after the one ending in
#                                    "summary"), values end in one column and
#                                    every number of 4+ digits has separators
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-example: $*" >&2; exit 1; }

case ${1:-} in
help)
	example=$2
	cargo build -q --profile ci --example "$example"
	bin=target/ci/examples/$example
	out=$("$bin" --help 2>"${TMPDIR:-/tmp}/help.err") || fail "$example --help exited $?"
	[[ $out == "usage: $example "* ]] || fail "$example --help printed no usage on stdout"
	[[ ! -s ${TMPDIR:-/tmp}/help.err ]] || fail "$example --help wrote to stderr"
	[[ $("$bin" -h) == "$out" ]] || fail "$example -h differs from --help"
	rc=0
	"$bin" --no-such-option >/dev/null 2>"${TMPDIR:-/tmp}/help.err" || rc=$?
	((rc == 2)) || fail "$example with an unknown option exited $rc, not 2"
	grep -q "^usage: $example" "${TMPDIR:-/tmp}/help.err" || fail "$example: no usage on stderr for an unknown option"
	echo "$example: --help and unknown options ok"
	;;
summary)
	file=$2
	awk '
		/summary$/ { on = 1; next }
		on && /^  / {
			rows++
			# The value: the first number after the label (labels have no digits).
			if (!match($0, /  [0-9][0-9,.]*( |$)/)) { print "no value in: " $0; bad = 1; next }
			end = RSTART + RLENGTH - ((substr($0, RSTART + RLENGTH - 1, 1) == " ") ? 1 : 0)
			if (column && end != column) { print "value out of column in: " $0; bad = 1 }
			column = end
			if ($0 ~ /[0-9][0-9][0-9][0-9]/) { print "number without separators in: " $0; bad = 1 }
		}
		END {
			if (rows < 5) { print "no summary of at least 5 rows"; bad = 1 }
			exit bad
		}' "$file" || fail "summary of $file"
	echo "summary of $file: aligned, numbers grouped"
	;;
*)
	fail "usage: check-example.sh help EXAMPLE | summary FILE"
	;;
esac
