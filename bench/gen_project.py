#!/usr/bin/env python3
"""Generate a synthetic project of N models (chains, fan-in, fan-out) twice: as a Basin
project and as the equivalent dbt project (same graph, `ref()` instead of schema-qualified
names), so that `basin plan '*'` and `dbt parse` can be timed on the same workload.

usage: gen_project.py N OUT_DIR   -> OUT_DIR/basin and OUT_DIR/dbt
"""
import os
import random
import sys

def main() -> None:
    n, out = int(sys.argv[1]), sys.argv[2]
    rng = random.Random(42)
    roots = max(10, n // 100)
    models = []  # (schema, name, [upstream indexes], tags)
    for i in range(n):
        schema = "silver" if i < n * 0.7 else "gold"
        name = f"m_{i:05d}"
        if i < roots:
            ups = []
        else:
            shape = rng.random()
            if shape < 0.5:          # chain: the previous model or a recent one
                ups = [i - 1 if rng.random() < 0.5 else rng.randrange(max(0, i - 20), i)]
            elif shape < 0.8:        # fan-in: join 2 to 4 earlier models
                ups = rng.sample(range(i), min(i, rng.randint(2, 4)))
            else:                    # fan-out: many models read one of a few hubs
                ups = [rng.randrange(0, roots)]
        tags = ["nightly"] if i % 3 == 0 else ["hourly"]
        models.append((schema, name, sorted(set(ups)), tags))

    for flavour in ("basin", "dbt"):
        root = os.path.join(out, flavour)
        for schema in ("silver", "gold"):
            os.makedirs(os.path.join(root, "models", schema), exist_ok=True)
        if flavour == "basin":
            with open(os.path.join(root, "basin.toml"), "w") as f:
                f.write('[project]\nname = "bench"\n')
        else:
            with open(os.path.join(root, "dbt_project.yml"), "w") as f:
                f.write("name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\nmodel-paths: ['models']\n")
            with open(os.path.join(root, "profiles.yml"), "w") as f:
                f.write("bench:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: bench.duckdb\n")
        for i, (schema, name, ups, tags) in enumerate(models):
            def table(j: int) -> str:
                s, nm = models[j][0], models[j][1]
                return f"{s}.{nm}" if flavour == "basin" else "{{ ref('%s') }}" % nm
            if not ups:
                body = f"SELECT * FROM (VALUES (1, {i}), (2, {i + 1})) AS t(id, v)"
            else:
                cols = " + ".join(f"u{k}.v" for k in range(len(ups)))
                body = f"SELECT u0.id, {cols} AS v\nFROM {table(ups[0])} AS u0"
                for k, j in enumerate(ups[1:], start=1):
                    body += f"\nJOIN {table(j)} AS u{k} ON u{k}.id = u0.id"
            if flavour == "basin":
                header = f'/* basin\nowner = "team_{i % 7}"\ntags = {tags!r}\n*/\n'.replace("'", '"')
            else:
                header = "{{ config(materialized='table', tags=%r) }}\n" % tags
            with open(os.path.join(root, "models", schema, f"{name}.sql"), "w") as f:
                f.write(header + body + "\n")
    edges = sum(len(m[2]) for m in models)
    print(f"generated {n} models ({edges} dependencies) in {out}/basin and {out}/dbt")

if __name__ == "__main__":
    main()
