#!/bin/sh
# embed.sh FILE... — the dashboard's assets (ui/) as C: one ui_asset per file (src/server/ui.h)
# with its bytes, its gzip (when smaller), its media type and an ETag from its SHA-256, all
# made at build time so serving one costs a lookup. The Makefile runs it into build/gen/.
set -eu
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
hex() { od -An -v -tx1 | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; }
type_of() {
  case "$1" in
  *.html) echo "text/html; charset=utf-8" ;;
  *.css) echo "text/css; charset=utf-8" ;;
  *.js) echo "text/javascript; charset=utf-8" ;;
  *.svg) echo "image/svg+xml" ;;
  *.json) echo "application/json" ;;
  *) echo "unknown asset type: $1" >&2; exit 1 ;;
  esac
}
echo "/* Made by ui/embed.sh from ui/ at build time: do not edit. */"
echo "#include \"src/server/ui.h\""
i=0
for f in "$@"; do
  echo "static const unsigned char a${i}[] = {"; hex < "$f"; echo "};"
  gzip -9nc "$f" > "$tmp"
  if [ "$(wc -c < "$tmp")" -lt "$(wc -c < "$f")" ]; then
    echo "static const unsigned char z${i}[] = {"; hex < "$tmp"; echo "};"
  fi
  i=$((i + 1))
done
echo "const ui_asset ui_assets[] = {"
i=0
for f in "$@"; do
  sum=$(sha256sum "$f" | cut -c1-16)
  gzip -9nc "$f" > "$tmp"
  if [ "$(wc -c < "$tmp")" -lt "$(wc -c < "$f")" ]; then z="z${i}, sizeof z${i}"; else z="0, 0"; fi
  echo "    {\"$(basename "$f")\", \"$(type_of "$f")\", \"$sum\", a${i}, sizeof a${i}, $z},"
  i=$((i + 1))
done
echo "};"
echo "const size_t ui_asset_count = sizeof ui_assets / sizeof ui_assets[0];"
