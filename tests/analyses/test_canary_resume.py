"""The canary experiment resumes like a run: each language model's rows are stored atomically as
it finishes (lms/model-MMMM.json), and a rerun trains only the models without them."""

import json

from jaxmem import config as cfgmod
from jaxmem.analyses import canary_exposure as C


def test_canary_exposure_trains_only_models_without_stored_results(tmp_path, monkeypatch):
    trained = []

    def fake(cfg, m, repetitions, per_level, num_references, log):
        trained.append(m)
        return [{"model": m, "repetitions": int(r), "exposure_rank": float(r + m),
                 "exposure_skewnorm": float(2 * r + m)} for r in repetitions]

    monkeypatch.setattr(C, "_train_one", fake)
    cfg = cfgmod.load_config("canary_exposure", ["subsets.num_models=3"])
    (tmp_path / "lms").mkdir()
    stored = [{"model": 1, "repetitions": r, "exposure_rank": 100.0, "exposure_skewnorm": 100.0}
              for r in (1, 2, 4, 8, 16)]
    (tmp_path / "lms" / "model-0001.json").write_text(json.dumps(stored))   # finished earlier
    s = C.analyze(cfg, tmp_path, {}, lambda *a: None)
    assert trained == [0, 2]
    assert sorted(p.name for p in (tmp_path / "lms").iterdir()) == [
        "model-0000.json", "model-0001.json", "model-0002.json"]
    by = {r["repetitions"]: r for r in s["exposure_by_repetitions"]}
    assert by[1]["exposure_rank"] == (1 + 100 + 3) / 3 and by[1]["canaries"] == 3
    trained.clear()
    again = C.analyze(cfg, tmp_path, {}, lambda *a: None)
    assert trained == [] and again["exposure_by_repetitions"] == s["exposure_by_repetitions"]
