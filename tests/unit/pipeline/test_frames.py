import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from arcade_pacs.pipeline.frames import FrameError, decode_frames, frames_from_bytes, shutter_mask
from tests.factory import real_frame, xa_dataset

SAMPLES = [
    "xa_rubo0002_cine96_jpegbaseline.dcm",
    "xa1_wg04_jpeglossless_sv1.dcm",
    "xa1_wg04_rle.dcm",
    "xa1_wg04_uncompressed_reference.dcm",
    "rf_siemens_karstenhilbert_uncompressed.dcm",
]


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_decodes_to_512_frames_in_unit_range(dicom_dir, name):
    ds = pydicom.dcmread(dicom_dir / name)
    frames = decode_frames(ds)
    assert frames.data.shape == (int(ds.get("NumberOfFrames", 1)), 512, 512)
    assert frames.data.dtype == np.float32
    assert frames.data.min() >= 0.0
    assert frames.data.max() <= 1.0
    assert frames.data.max() - frames.data.min() > 0.5  # real contrast, not a blank
    assert (frames.rows, frames.columns) == (ds.Rows, ds.Columns)


def test_wg04_encodings_decode_to_identical_pixels(dicom_dir):
    decoded = [
        decode_frames(pydicom.dcmread(dicom_dir / f"xa1_wg04_{name}.dcm")).data
        for name in ("jpeglossless_sv1", "rle", "uncompressed_reference")
    ]
    np.testing.assert_array_equal(decoded[0], decoded[2])
    np.testing.assert_array_equal(decoded[1], decoded[2])


def test_monochrome1_is_inverted_to_the_monochrome2_picture(rubo):
    frame = real_frame(rubo, 50)
    mono2 = decode_frames(xa_dataset(frame)).data
    mono1 = decode_frames(xa_dataset(255 - frame, photometric="MONOCHROME1")).data
    np.testing.assert_allclose(mono1, mono2, atol=1e-5)


def test_12_bit_and_8_bit_versions_agree(rubo):
    frame = real_frame(rubo, 50)
    eight = decode_frames(xa_dataset(frame)).data
    twelve = decode_frames(xa_dataset(frame.astype(np.uint16) * 16 + 7, bits_stored=12)).data
    np.testing.assert_allclose(twelve, eight, atol=1e-4)


def test_window_is_applied_when_present(rubo):
    frame = real_frame(rubo, 50)
    windowed = decode_frames(xa_dataset(frame, WindowCenter=100, WindowWidth=51)).data[0]
    # PS3.3 C.11.2.1.2.1: values at or below c - 0.5 - (w-1)/2 = 74.5 are black, above 124.5 white.
    assert windowed[frame <= 74].max() == 0.0
    assert windowed[frame >= 125].min() == 1.0
    np.testing.assert_allclose(windowed[frame == 100], (100 - 99.5) / 50 + 0.5, atol=1e-6)


def test_rescale_is_applied_before_scaling(rubo):
    frame = real_frame(rubo, 50)
    plain = decode_frames(xa_dataset(frame)).data
    rescaled = decode_frames(xa_dataset(frame, RescaleSlope=2, RescaleIntercept=-100)).data
    np.testing.assert_allclose(rescaled, plain, atol=1e-5)  # linear: same picture after range scaling


def _lut(values: np.ndarray, bits: int) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(values), 0, bits]
    item.LUTData = [int(v) for v in values]
    return item


def test_modality_lut_sequence_is_applied(rubo):
    frame = real_frame(rubo, 50)
    lut = np.arange(256) ** 2 // 16  # non-linear: Rescale Slope could not express it
    mapped = decode_frames(xa_dataset(frame, ModalityLUTSequence=[_lut(lut, 16)])).data[0]
    values = lut[frame].astype(np.float64)
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(mapped, expected, atol=1e-5)


def test_voi_lut_sequence_is_applied(rubo):
    frame = real_frame(rubo, 50)
    inverse = decode_frames(xa_dataset(frame, VOILUTSequence=[_lut(255 - np.arange(256), 8)])).data[0]
    np.testing.assert_allclose(inverse, (255 - frame) / 255, atol=1e-5)


def test_enhanced_per_frame_windows_override_the_shared_one(rubo):
    frames = [real_frame(rubo, i) for i in (30, 60)]

    def group(center, width):
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, width
        item = Dataset()
        item.FrameVOILUTSequence = [voi]
        return item

    ds = xa_dataset(frames, sop_class="1.2.840.10008.5.1.4.1.1.12.1.1",
                    SharedFunctionalGroupsSequence=[group(128, 256)],
                    PerFrameFunctionalGroupsSequence=[Dataset(), group(100, 51)])
    data = decode_frames(ds).data
    np.testing.assert_allclose(data[0], np.clip((frames[0] - 127.5) / 255 + 0.5, 0, 1), atol=1e-5)
    np.testing.assert_allclose(data[1], np.clip((frames[1] - 99.5) / 50 + 0.5, 0, 1), atol=1e-5)


def test_pixel_padding_range_is_excluded(rubo):
    frame = real_frame(rubo, 50).copy()
    frame[:, :40] = 0
    frame[:, 40:80] = 10  # padding too: within Pixel Padding Value .. Pixel Padding Range Limit
    frame[:, 80:] = np.maximum(frame[:, 80:], 11)
    frames = decode_frames(xa_dataset(frame, PixelPaddingValue=0, PixelPaddingRangeLimit=10))
    assert not frames.valid[:, :80].any()
    assert frames.valid[:, 90:].all()
    assert frames.data[0][:, :80].max() == 0.0


def test_pixel_padding_and_shutter_are_black_and_excluded(rubo):
    frame = real_frame(rubo, 50).copy()
    frame[:, :40] = 0
    ds = xa_dataset(frame, PixelPaddingValue=0, ShutterShape="CIRCULAR", CenterOfCircularShutter=[256, 256], RadiusOfCircularShutter=200)
    frames = decode_frames(ds)
    assert not frames.valid[256, 10]
    assert not frames.valid[5, 5]
    assert frames.valid[256, 256]
    assert frames.data[0][~frames.valid].max() == 0.0


def test_rectangular_and_polygonal_shutters():
    ds = xa_dataset(np.zeros((10, 10), np.uint8), ShutterShape="RECTANGULAR\\POLYGONAL",
                    ShutterLeftVerticalEdge=2, ShutterRightVerticalEdge=9,
                    ShutterUpperHorizontalEdge=3, ShutterLowerHorizontalEdge=8,
                    VerticesOfThePolygonalShutter=[1, 1, 1, 10, 10, 10, 10, 1])
    mask = shutter_mask(ds, 10, 10)
    assert mask[2, 1]
    assert mask[7, 8]
    assert not mask[1, 1]
    assert not mask[8, 5]
    assert not mask[5, 0]


def test_truncated_pixel_data_is_a_frame_error(rubo):
    ds = xa_dataset(np.stack([real_frame(rubo, 0)] * 3))
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    with pytest.raises(FrameError):
        decode_frames(ds)


def test_frame_count_larger_than_data_is_a_frame_error(rubo):
    ds = xa_dataset(np.stack([real_frame(rubo, 0)] * 2))
    ds.NumberOfFrames = 5
    with pytest.raises(FrameError):
        decode_frames(ds)


@pytest.mark.parametrize("change", ["colour", "zero_frames", "no_pixels", "too_many_frames"])
def test_unusable_inputs_are_frame_errors(rubo, change):
    ds = xa_dataset(np.stack([real_frame(rubo, 0)] * 2))
    if change == "colour":
        ds.PhotometricInterpretation = "RGB"
        ds.SamplesPerPixel = 3
    elif change == "zero_frames":
        ds.NumberOfFrames = 0
    elif change == "no_pixels":
        del ds.PixelData
    with pytest.raises(FrameError):
        decode_frames(ds, max_frames=1 if change == "too_many_frames" else None)


def test_uploaded_png_and_non_image_bytes(tmp_path, rubo):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(real_frame(rubo, 50)).convert("RGB").save(buffer, format="PNG")
    frames = frames_from_bytes(buffer.getvalue())
    assert frames.data.shape == (1, 512, 512)
    with pytest.raises(FrameError):
        frames_from_bytes(b"this is not an image")
