"""Every hostile file fed straight to the frame decoder: frames, or a FrameError that names the
problem without quoting patient data; never another exception, never gigabytes of memory."""

import collections
import resource
import warnings

import numpy as np
import pytest

from arcade_pacs.pipeline.frames import FrameError, FrameSource
from arcade_pacs.pipeline.part10 import Kind
from tests.hostile import CANARIES, dataset_cases

pytestmark = [pytest.mark.slow]


def test_every_hostile_file_gives_frames_or_a_named_frame_error(rubo, tmp_path):
    cases = dataset_cases(rubo)
    assert len(cases) >= 200
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    outcomes = collections.Counter()
    for case in cases:
        path = case.write(tmp_path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                source = FrameSource(path, max_frames=2000)
                source.scan()
                frames = source.read([0])
            assert frames.data.shape == (1, 512, 512), case.name
            assert np.isfinite(frames.data).all(), case.name
            assert frames.data.min() >= 0, case.name
            assert frames.data.max() <= 1, case.name
            outcomes["decoded"] += 1
        except FrameError as exc:
            assert not any(canary in str(exc) for canary in CANARIES), (case.name, str(exc))
            assert len(str(exc)) <= 600
            assert exc.kind in Kind, case.name  # the door's refusal keeps its kind
            outcomes[f"FrameError ({exc.kind}): {str(exc).split(':')[0]}"] += 1
        finally:
            path.unlink()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{len(cases)} hostile files, peak RSS of this process {peak_mb:.0f} MB (before: {before_mb:.0f} MB)")
    for outcome, n in outcomes.most_common():
        print(f"{n:4d}  {outcome}")
    assert outcomes["decoded"] >= 2  # the controls
    # The process's peak (other tests may have set it before) grew by less than 300 MB: no
    # hostile file made the decoder allocate what its header asked for.
    assert peak_mb - before_mb < 300
