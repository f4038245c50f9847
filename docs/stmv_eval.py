import time, numpy as np, torch
import allegro_bio
from allegro_bio import systems
from allegro_bio.inference import evaluate
t0 = time.time(); s = systems.stmv(); a = s.to_ase(); print("built", len(a), f"{time.time()-t0:.0f}s", flush=True)
types = sorted(set(a.get_chemical_symbols())); print(types, flush=True)
m = allegro_bio.build_model("small", types, seed=0)
t0 = time.time()
r = evaluate(m, a.positions, a.numbers, np.asarray(a.cell), a.pbc, compute_virial=False)
print(f"E+F of {len(a)} atoms, {r.n_pairs} pairs: {time.time()-t0:.0f} s, finite={np.isfinite(r.forces).all()}", flush=True)
