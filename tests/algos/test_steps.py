"""Step segmentation and step entropy: golden values, loop references, masking invariance."""

from __future__ import annotations

import pytest
import torch

import empg
from empg.errors import InputError, NonFiniteError, ShapeError


def loop_segments(mask: torch.Tensor):
    """Plain-loop reference: list of (row, step_index, start, end)."""
    out = []
    for b in range(mask.shape[0]):
        t, k = 0, 0
        row = [int(v) for v in mask[b]]
        while t < len(row):
            if row[t]:
                s = t
                while t < len(row) and row[t]:
                    t += 1
                out.append((b, k, s, t))
                k += 1
            else:
                t += 1
    return out


def test_segment_golden():
    mask = torch.tensor(
        [[0, 1, 1, 0, 1, 0], [1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 1]]
    )
    seg = empg.segment_steps(mask)
    assert seg.row.tolist() == [0, 0, 1, 3, 3, 3]
    assert seg.step_index.tolist() == [0, 1, 0, 0, 1, 2]
    assert seg.start.tolist() == [1, 4, 0, 0, 2, 4]
    assert seg.end.tolist() == [3, 5, 4, 1, 3, 6]
    assert seg.length.tolist() == [2, 1, 4, 1, 1, 2]
    assert seg.token_step.tolist() == [
        [-1, 0, 0, -1, 1, -1],
        [2, 2, 2, 2, -1, -1],
        [-1, -1, -1, -1, -1, -1],
        [3, -1, 4, -1, 5, 5],
    ]


@pytest.mark.parametrize("seed", range(30))
def test_segment_matches_loop(seed):
    g = torch.Generator().manual_seed(seed)
    b, length = (
        int(torch.randint(1, 6, (1,), generator=g)),
        int(torch.randint(1, 40, (1,), generator=g)),
    )
    p = float(torch.rand(1, generator=g))
    mask = (torch.rand(b, length, generator=g) < p).long()
    seg = empg.segment_steps(mask)
    got = list(
        zip(
            seg.row.tolist(),
            seg.step_index.tolist(),
            seg.start.tolist(),
            seg.end.tolist(),
            strict=True,
        )
    )
    assert got == loop_segments(mask)
    ent = torch.rand(b, length, generator=g, dtype=torch.float64)
    step_h, _ = empg.step_entropy_from_sequences(ent, mask)
    ref = [ent[r, s:e].mean().item() for r, _, s, e in loop_segments(mask)]
    assert step_h.dtype == torch.float32
    torch.testing.assert_close(
        step_h.double(), torch.tensor(ref, dtype=torch.float64), atol=1e-7, rtol=0
    )


def test_masked_values_never_matter():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[0, 1, 1, 0, 1, 1], [1, 1, 0, 0, 0, 1]])
    ent = torch.rand(2, 6, generator=g)
    a, _ = empg.step_entropy_from_sequences(ent, mask)
    ent2 = ent.clone()
    ent2[mask == 0] = float("nan")
    b, _ = empg.step_entropy_from_sequences(ent2, mask)
    ent3 = ent.clone()
    ent3[mask == 0] = 1e6
    c, _ = empg.step_entropy_from_sequences(ent3, mask)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    r1 = empg.step_entropy_from_rows(ent, mask)
    r2 = empg.step_entropy_from_rows(ent2, mask)
    torch.testing.assert_close(r1, r2)


def test_rows_golden():
    ent = torch.tensor([[0.5, 1.5, 9.0], [2.0, 0.0, 1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert empg.step_entropy_from_rows(ent, mask).tolist() == pytest.approx([1.0, 1.0])


def test_mask_dtypes_accepted():
    ent = torch.rand(2, 4)
    ref, _ = empg.step_entropy_from_sequences(ent, torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]]))
    for dt in (torch.bool, torch.float32, torch.int32, torch.uint8):
        got, _ = empg.step_entropy_from_sequences(
            ent, torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]]).to(dt)
        )
        torch.testing.assert_close(got, ref)


def test_bad_inputs():
    ent = torch.rand(2, 3)
    with pytest.raises(InputError, match="only 0 and 1"):
        empg.segment_steps(torch.tensor([[0, 2, 1]]))
    with pytest.raises(InputError, match="only 0 and 1"):
        empg.step_entropy_from_sequences(ent, torch.tensor([[0, 0.5, 1], [1, 1, 1]]))
    with pytest.raises(ShapeError, match="must match exactly"):
        empg.step_entropy_from_sequences(ent, torch.ones(2, 4))
    with pytest.raises(ShapeError, match=r"\(B, L\)"):
        empg.segment_steps(torch.ones(3))
    bad = ent.clone()
    bad[0, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="token_entropy"):
        empg.step_entropy_from_sequences(bad, torch.ones(2, 3))
    with pytest.raises(InputError, match="no response tokens"):
        empg.step_entropy_from_rows(ent, torch.tensor([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(InputError, match=">= 0"):
        empg.step_entropy_from_rows(-ent, torch.ones(2, 3))


def test_step_id_checks():
    with pytest.raises(InputError, match=r"duplicate \(traj_id, step_index\) rows: \(1, 2\)"):
        empg.check_step_ids(torch.tensor([0, 1, 1]), torch.tensor([2, 2, 2]), 3)
    with pytest.raises(InputError, match="step_index must be >= 0"):
        empg.check_step_ids(torch.tensor([0]), torch.tensor([-1]), 1)
    with pytest.raises(InputError, match="integer"):
        empg.check_step_ids(torch.tensor([0.0]), torch.tensor([0]), 1)
