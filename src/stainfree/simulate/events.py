"""Time-lapse events at known frames: mitochondrial fission and fusion, transient organelle contacts.

Played on top of the motion model (:mod:`stainfree.simulate.motion`) from the field's own random stream 4
(``SeedSequence(seed, spawn_key=(field, 4))``), so a configuration without events gives the same arrays bit
for bit as before events existed.

Each event adds its own mitochondrion: a straight tube 2-2.6 um long in the coverslip plane where the
cytoplasm has room for it, drifting slowly.

* **fission** at frame ``f``: the mitochondrion is whole up to frame ``f - 1``; from ``f`` on it is two
  pieces, a 0.7 um gap cut out of its middle; the first piece keeps the instance id, the second gets a new
  one.
* **fusion** at frame ``f``: the reverse: two pieces (two instances) up to ``f - 1``, one tube from ``f`` on.
* **contact** from ``start`` to ``end``: a new lipid droplet or lysosome sits beside a mitochondrion, touching
  it (0.05 um overlap) from ``start`` to ``end`` and 0.25 um (one frame away) or 0.5 um (two or more frames
  away) off its surface otherwise, moving with the mitochondrion.

Every event object lies inside its cell's cytoplasm in every frame, and other movable organelles within
1.0 um of an event are removed from the field (all frames), so truth is not blurred by unrelated neighbours.
Events are placed at least 2.5 um apart. Fewer events than asked are played when a field runs out of room
(``field.json`` lists those played).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from stainfree.simulate.draw import Ellipsoid, Primitive, Tube
from stainfree.simulate.geometry import Scene, SceneObject

__all__ = ["EVENT_COLUMNS", "EventPlan", "dump_config", "plan_events"]

#: Columns of a field's ``events.csv``.
EVENT_COLUMNS: tuple[str, ...] = (
    "kind",
    "frame",
    "end_frame",
    "structure_a",
    "instance_a",
    "structure_b",
    "instance_b",
    "z_um",
    "y_um",
    "x_um",
)

_GAP_UM = 0.35  # half of the gap cut out of a dividing tube
_CLEAR_UM = 1.0  # neighbours removed within this distance of an event's objects
_SPACING_UM = 2.5  # events at least this far apart
_MIN_PIECE_UM = 0.5
_VESICLE_RADIUS = {"lipid_droplet": 0.4, "lysosome": 0.3}
_STEP_UM = 0.25  # distance a contacting vesicle moves per frame on approach and departure


def dump_config(config: Any) -> dict:
    """The configuration as JSON for ``field.json`` / ``simulation.json``; ``events`` and ``phases`` left out
    when unset (files of fields without them stay as they were)."""
    exclude = {k for k in ("events", "phases") if getattr(config, k, None) is None}
    return config.model_dump(mode="json", exclude=exclude)


@dataclass
class EventPlan:
    """Every object of a field with events, per frame.

    Attributes
    ----------
    scene : the field's scene with every object (added pieces and vesicles included; removed ones kept) for
        ownership.
    prims : per object, per frame, its primitives (None = not drawn in that frame).
    shifts : (T, n_objects, 3) displacement (um) per frame.
    events : the events played, with pre-relabel instance ids (see :meth:`table`).
    """

    scene: Scene
    prims: list[list[list[Primitive] | None]]
    shifts: np.ndarray
    events: list[dict]

    def frame(self, t: int) -> tuple[Scene, list[np.ndarray]]:
        """The scene of frame ``t`` and its shifts, for :func:`stainfree.simulate.geometry.rasterize`."""
        keep = [i for i, p in enumerate(self.prims) if p[t] is not None]
        objs = [replace(self.scene.objects[i], primitives=self.prims[i][t] or []) for i in keep]
        return replace(self.scene, objects=objs), list(self.shifts[t, keep])

    def table(self, lut: np.ndarray) -> list[dict]:
        """The events with instance ids as written (``lut[label, old id]``), for field.json / events.csv."""
        from stainfree.types import compartment_id

        out = []
        for ev in self.events:
            row = dict(ev)
            for side in ("a", "b"):
                lab = compartment_id(row[f"structure_{side}"])
                row[f"instance_{side}"] = int(lut[lab, row[f"instance_{side}"]])
            out.append({k: row[k] for k in EVENT_COLUMNS})
        return out


def _points(ob: SceneObject) -> np.ndarray:
    """Points standing for an object (tube samples, ellipsoid centres)."""
    pts = [p.points if isinstance(p, Tube) else p.center[None] for p in ob.primitives]
    return np.concatenate(pts) if pts else np.asarray(ob.center, float)[None]


def _windows(rng: np.random.Generator, n_frames: int) -> tuple[int, int]:
    """A contact window [start, end] with two clear frames before and after."""
    start = int(rng.integers(2, max(3, n_frames - 4)))
    end = min(start + int(rng.integers(1, 4)), n_frames - 3)
    return start, max(start, end)


def plan_events(
    scene: Scene,
    traj: np.ndarray,
    rng: np.random.Generator,
    counts: tuple[int, int, int],
    n_frames: int,
) -> EventPlan:
    """Place fissions, fusions and contacts in a field.

    Each event adds its own mitochondrion (a straight tube 2-2.6 um long, radius 0.16-0.2 um, in the
    coverslip plane, where the cytoplasm has room for it) drifting by 0.03 um per frame and axis, and for a
    contact a vesicle; existing movable organelles near them are removed.

    Parameters
    ----------
    scene : the field's geometry (not modified).
    traj : (T, n_objects, 3) displacements from :func:`stainfree.simulate.motion.trajectories`.
    rng : the field's event stream (4).
    counts : (fissions, fusions, contacts) wanted.
    n_frames : number of frames (events need at least 6).

    Returns
    -------
    EventPlan
    """
    from scipy import ndimage

    objects = list(scene.objects)
    n = len(objects)
    prims: list[list[list[Primitive] | None]] = [[list(ob.primitives)] * n_frames for ob in objects]
    shifts = [traj[:, i] for i in range(n)]
    events: list[dict] = []
    if n_frames < 6 or not any(counts) or n == 0:
        return EventPlan(scene, prims, traj, events)
    vox = np.asarray(scene.voxel_um, float)
    top: dict[str, int] = {}
    for ob in objects:
        top[ob.cls] = max(top.get(ob.cls, 0), ob.instance)
    room = ndimage.distance_transform_edt((scene.cyto_cell > 0) & (scene.top_labels == 0), sampling=vox)
    seeds = np.argwhere(room >= 0.6)
    tree_pts = [_points(ob) for ob in objects]
    drift = np.abs(traj).max(axis=(0, 2))
    # contacts first: they need the most room (a vesicle beside the tube)
    split = ["fission"] * counts[0] + ["fusion"] * counts[1]
    kinds = ["contact"] * counts[2] + [split[k] for k in rng.permutation(len(split))]
    sites: list[np.ndarray] = []
    removed: set[int] = set()

    def fits(pts: np.ndarray, margin: float) -> bool:
        idx = np.rint(pts / vox).astype(int)
        if np.any(idx < 0) or np.any(idx >= np.asarray(scene.shape)):
            return False
        return bool(np.all(room[tuple(idx.T)] >= margin))

    for kind in kinds:
        for _ in range(200 if len(seeds) else 0):
            site = seeds[int(rng.integers(len(seeds)))] * vox
            if any(np.linalg.norm((site - s)[1:]) < _SPACING_UM for s in sites):
                continue
            phi = rng.uniform(0, 2 * np.pi)
            direction = np.array([0.0, np.sin(phi), np.cos(phi)])
            length, r = rng.uniform(2.0, 2.6), rng.uniform(0.16, 0.2)
            pts = site + np.linspace(-length / 2, length / 2, int(length / 0.04) + 1)[:, None] * direction
            walk = np.concatenate([np.zeros((1, 3)), np.cumsum(rng.normal(0, 0.03, (n_frames - 1, 3)), 0)])
            if not all(fits(pts + walk[t], r + 0.1) for t in range(n_frames)):
                continue
            cell = int(scene.cyto_cell[tuple(np.rint(site / vox).astype(int))])
            top["mitochondria"] = top.get("mitochondria", 0) + 1
            mito = SceneObject("mitochondria", top["mitochondria"], cell, [Tube(pts, r)], site)
            if kind == "contact":
                vesicle = _contact_vesicle(mito, pts, r, walk, rng, len(sites), fits)
                if vesicle is None:
                    top["mitochondria"] -= 1
                    continue
                ves, ves_shift, start, end = vesicle
                top[ves.cls] = top.get(ves.cls, 0) + 1
                ves.instance = top[ves.cls]
                objects += [mito, ves]
                shifts += [walk, ves_shift]
                prims += [[[Tube(pts, r)]] * n_frames, [list(ves.primitives)] * n_frames]
                pos = ves.center + ves_shift[start]
                events.append(
                    _row("contact", start, end, ves.cls, ves.instance, "mitochondria", mito.instance, pos)
                )
                here = np.concatenate([pts, ves.center[None]])
            else:
                piece_a, piece_b = _split(pts)
                frame = int(rng.integers(2, n_frames - 2))
                top["mitochondria"] += 1
                other = replace(mito, instance=top["mitochondria"], primitives=[Tube(piece_b, r)])
                whole: list[Primitive] = [Tube(pts, r)]
                a: list[Primitive] | None = [Tube(piece_a, r)]
                b: list[Primitive] | None = [Tube(piece_b, r)]
                objects += [mito, other]
                shifts += [walk, walk]
                if kind == "fission":
                    prims.append([whole if t < frame else a for t in range(n_frames)])
                    prims.append([None if t < frame else b for t in range(n_frames)])
                else:
                    prims.append([a if t < frame else whole for t in range(n_frames)])
                    prims.append([b if t < frame else None for t in range(n_frames)])
                pos = site + walk[frame]
                events.append(
                    _row(
                        kind, frame, frame, "mitochondria", mito.instance, "mitochondria", other.instance, pos
                    )
                )
                here = pts
            sites.append(site)
            removed |= _neighbours(tree_pts, drift, here)
            break
    for i in removed:
        prims[i] = [None] * n_frames
    full = replace(scene, objects=objects)
    return EventPlan(full, prims, np.stack(shifts, axis=1), events)


def _row(
    kind: str, frame: int, end: int, sa: str, ia: int, sb: str, ib: int, pos: np.ndarray
) -> dict[str, Any]:
    return {
        "kind": kind,
        "frame": int(frame),
        "end_frame": int(end),
        "structure_a": sa,
        "instance_a": int(ia),
        "structure_b": sb,
        "instance_b": int(ib),
        "z_um": round(float(pos[0]), 4),
        "y_um": round(float(pos[1]), 4),
        "x_um": round(float(pos[2]), 4),
    }


def _split(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two pieces of a polyline with a gap of 2 x _GAP_UM cut out of its middle (by arc length)."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    mid = arc[-1] / 2
    return pts[arc <= mid - _GAP_UM], pts[arc >= mid + _GAP_UM]


def _neighbours(tree_pts: list[np.ndarray], drift: np.ndarray, site: np.ndarray) -> set[int]:
    """Objects whose points come within _CLEAR_UM (plus their drift) of the event's points."""
    tree = cKDTree(site)
    out = set()
    for j, pts in enumerate(tree_pts):
        d, _ = tree.query(pts, k=1)
        if float(np.min(d)) < _CLEAR_UM + float(drift[j]):
            out.add(j)
    return out


def _contact_vesicle(
    mito: SceneObject,
    pts: np.ndarray,
    r_m: float,
    walk: np.ndarray,
    rng: np.random.Generator,
    k: int,
    fits: Any,
) -> tuple[SceneObject, np.ndarray, int, int] | None:
    """A vesicle touching the mitochondrion's middle during a window, off its surface outside it."""
    n_frames = len(walk)
    cls = "lipid_droplet" if k % 2 == 0 else "lysosome"
    r_v = _VESICLE_RADIUS[cls]
    tangent = pts[-1] - pts[0]
    normal = np.array([0.0, -tangent[2], tangent[1]]) / np.linalg.norm(tangent)
    start, end = _windows(rng, n_frames)
    away = np.array([_STEP_UM * min(2, max(start - t, t - end, 0)) for t in range(n_frames)])
    for sign in (1.0, -1.0):
        nrm = sign * normal
        contact = pts[len(pts) // 2] + nrm * (r_m + r_v - 0.05)
        shift = walk + away[:, None] * nrm[None]
        if all(fits(contact[None] + shift[t], 0.6 * r_v) for t in range(n_frames)):
            obj = SceneObject(cls, 0, mito.cell, [Ellipsoid(contact, np.full(3, r_v))], contact)
            return obj, shift, start, end
    return None
