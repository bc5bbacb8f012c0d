# Sourced by the demo benchmarks: BASIN (a release basin) and DIR (the demo project at SCALE,
# source + bronze generated once into bench/.demo-<SCALE> and reused).
BASIN=$(realpath "${BASIN_BIN:-target/release/basin}")
[ -x "$BASIN" ] || { echo "build it first: cargo build --release -p basin (or set BASIN_BIN)"; exit 1; }
DIR=bench/.demo-$SCALE
if [ ! -d "$DIR/lake/bronze" ]; then
  echo "generating the demo at scale $SCALE and landing it in bronze (once)…"
  /usr/bin/time -f "  demo (generate + ingest + first build): %es, peak RSS %M KiB" \
    "$BASIN" demo --dir "$DIR" --scale "$SCALE" --days 1 > "$DIR.log" 2>&1 || { tail -20 "$DIR.log"; exit 1; }
  grep -E "source:|rows written" "$DIR.log" || true
fi
