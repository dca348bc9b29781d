"""Partial quantization: keep the most quantization-sensitive convs in FP32, quantize the rest.

The convs are ordered by a sensitivity metric (:mod:`repyolo.quant.sensitivity`; MSE of the
outputs by default, cheap to compute, or the mAP drop / SNR / cosine, or a saved report).
Then either the user picks ``k`` (skip the ``k`` most sensitive), or a budget on the mAP drop
picks the smallest ``k`` whose mixed model stays within it: ``k = 0, 1, 2, 4, ...`` until the
budget holds, then a bisection between the last two tries. The bisection assumes the drop
shrinks as more layers are skipped, which holds for a ranking that is roughly right; every
evaluated ``k`` is recorded in the search log.
"""
from __future__ import annotations

from repyolo.errors import RepyoloError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


def sensitivity_ranking(ctx, data, rank_by: str = "mse", report=None, eval_images: int = 50,
                        threads: int | None = None, seed: int = 0, evaluator=None) -> list[str]:
    """Conv names of ``ctx`` most sensitive first, from a saved ``report`` (path or
    :class:`~repyolo.quant.sensitivity.SensitivityReport`) or computed now."""
    from repyolo.quant.sensitivity import SensitivityReport, analyze

    if report is not None:
        rep = report if isinstance(report, SensitivityReport) else SensitivityReport.load(report)
        ranking = rep.ranking(rank_by)
        missing = [n for n in ranking if n not in ctx.fp.convs]
        if missing:
            raise RepyoloError(f"the sensitivity report names convs this model does not have "
                               f"({', '.join(missing[:3])}...): was it made for another model?")
        return ranking
    if rank_by == "map" and evaluator is None:
        from repyolo.quant.evaluate import SubsetEvaluator

        evaluator = SubsetEvaluator(data, ctx.fp.img_size[0], n_images=eval_images,
                                    stride=int(ctx.fp.metadata.get("stride", 32)), seed=seed)
    LOGGER.info("ranking %d convs by quantization sensitivity (%s)", len(ctx.fp.convs), rank_by)
    rep = analyze(ctx, evaluator if rank_by == "map" else None, threads=threads, include_full=False)
    return rep.ranking(rank_by)


def search_map_budget(ctx, ranking: list[str], evaluator, budget: float, threads: int | None = None,
                      exclude=()) -> tuple[int, list[dict]]:
    """Smallest ``k`` such that skipping ``ranking[:k]`` loses at most ``budget`` mAP (fraction).

    Returns ``(k, log)``; ``log`` lists ``{"k", "map", "drop"}`` for every evaluated ``k`` (and
    ``k = -1`` for the FP32 reference).
    """
    from repyolo.quant.evaluate import session_backend

    if budget < 0:
        raise RepyoloError(f"--map-budget {budget}: must be >= 0 (a fraction of mAP, e.g. 0.01)")
    fp32_map = float(evaluator(session_backend(ctx.fp.path, threads=threads))["map"])
    log = [{"k": -1, "map": fp32_map, "drop": 0.0}]
    cache: dict[int, float] = {}

    def drop(k: int) -> float:
        if k not in cache:
            proto = ctx.build(exclude=list(exclude) + ranking[:k])
            m = float(evaluator(session_backend(proto, threads=threads))["map"])
            cache[k] = fp32_map - m
            log.append({"k": k, "map": m, "drop": cache[k]})
            LOGGER.info("partial quantization: %d convs FP32 -> mAP %.4f (drop %.2f points)", k, m, cache[k] * 100)
        return cache[k]

    n = len(ranking)
    if drop(0) <= budget:
        return 0, log
    lo, k = 0, 1  # drop(lo) > budget
    while k < n and drop(k) > budget:
        lo, k = k, min(2 * k, n)
    if k >= n and drop(n) > budget:
        LOGGER.warning("even with all %d convs in FP32 the mAP drop is %.2f points (> budget %.2f): "
                       "keeping all of them in FP32", n, drop(n) * 100, budget * 100)
        return n, log
    hi = k  # drop(hi) <= budget
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if drop(mid) <= budget:
            hi = mid
        else:
            lo = mid
    return hi, log


def choose_skipped(ctx, data, skip_sensitive: int = 0, map_budget: float | None = None, rank_by: str = "mse",
                   report=None, eval_images: int = 100, threads: int | None = None, seed: int = 0,
                   exclude=()) -> tuple[list[str], list[dict]]:
    """The convs to keep in FP32: ``skip_sensitive`` most sensitive, or the fewest that meet
    ``map_budget``. Returns ``(skipped, search_log)``."""
    from repyolo.quant.evaluate import SubsetEvaluator

    if skip_sensitive and map_budget is not None:
        raise RepyoloError("give either --skip-sensitive K or --map-budget B, not both")
    if skip_sensitive < 0:
        raise RepyoloError(f"--skip-sensitive {skip_sensitive}: must be >= 0")
    evaluator = None
    if map_budget is not None or rank_by == "map":
        evaluator = SubsetEvaluator(data, ctx.fp.img_size[0], n_images=eval_images,
                                    stride=int(ctx.fp.metadata.get("stride", 32)), seed=seed)
    ranking = sensitivity_ranking(ctx, data, rank_by=rank_by, report=report, eval_images=eval_images,
                                  threads=threads, seed=seed, evaluator=evaluator)
    if map_budget is None:
        if skip_sensitive > len(ranking):
            raise RepyoloError(f"--skip-sensitive {skip_sensitive}: the model has only {len(ranking)} "
                               "quantizable convs")
        skipped = ranking[:skip_sensitive]
        LOGGER.info("partial quantization: keeping the %d most sensitive convs (%s) in FP32: %s", len(skipped),
                    rank_by, ", ".join(skipped))
        return skipped, []
    k, log = search_map_budget(ctx, ranking, evaluator, float(map_budget), threads=threads, exclude=exclude)
    skipped = ranking[:k]
    LOGGER.info("partial quantization: %d convs in FP32 meet the mAP budget of %.2f points: %s", k,
                map_budget * 100, ", ".join(skipped) or "(none)")
    return skipped, log


__all__ = ["choose_skipped", "search_map_budget", "sensitivity_ranking"]
