#!/usr/bin/env bash
# Checks that the documentation stays a front door and a set of references:
# README.md at most 200 lines with no line over 600 characters,
# BENCHMARKS.md at most 250 lines, every relative link in a tracked
# Markdown file and every file the README's tour uploads existing, every
# folder under cmd/ and internal/ in the README's map of the code, and
# nothing in the repository referring to files outside it.
set -uo pipefail
cd "$(dirname "$0")/.."

fail=0
bad() { printf 'docs.sh: %s\n' "$*" >&2; fail=1; }

limit() { # file, most lines, longest line (0: any)
	local lines longest
	lines=$(wc -l <"$1")
	longest=$(awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }' "$1")
	((lines <= $2)) || bad "$1 has $lines lines, at most $2 allowed"
	(($3 == 0 || longest <= $3)) || bad "$1 has a line of $longest characters, at most $3 allowed"
}
limit README.md 200 600
limit BENCHMARKS.md 250 0

# Relative links: [text](path) and [text](path#anchor) in tracked Markdown.
while IFS= read -r md; do
	dir=$(dirname "$md")
	while IFS= read -r target; do
		target=${target%%#*}
		[[ -z $target || $target == *://* || $target == mailto:* ]] && continue
		[[ -e "$dir/$target" ]] || bad "$md links to $target, which does not exist"
	done < <(grep -o '](\([^)]*\))' "$md" | sed 's/^](//; s/)$//')
done < <(git ls-files '*.md')

# The README's map of the code names every folder under cmd/ and internal/.
for d in $(git ls-files cmd internal | cut -d/ -f1-2 | sort -u); do
	grep -q "\`$d\`" README.md || bad "README.md's map of the code does not name $d"
done

# Files the README's commands upload (curl -F name=@path) exist.
while IFS= read -r f; do
	[[ -e $f ]] || bad "README.md uploads $f, which does not exist"
done < <(grep -o '=@[^ ";]*' README.md | sed 's/^=@//')

# Nothing may point outside the repository (a sibling checkout, the
# contract or style guide kept elsewhere, this machine's paths).
if out=$(git grep -n -I -e '\.\./shared' -e 'API\.md' -e 'STYLE\.md' -e '/work/' -- ':!.ci/docs.sh'); then
	bad "references to files outside the repository:"
	printf '%s\n' "$out" >&2
fi

exit $fail
