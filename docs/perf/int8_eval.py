"""Measurement behind the int8 decision (issue 10): full-integer LiteRT vs the float32 form.

Run from the repo root after `arcade-pacs engine --build` and a SavedModel export of the model to
/tmp/wt10exp/sm (keras model.export(..., format="tf_saved_model")). Not part of the package.
Result on 2026-11-26 (2-core AMD EPYC, AVX-512 VNNI): 313 vs 127 passes/s at batch 4, but val
window AUC 0.8200 vs 0.8250 (drop 0.0050 > 0.003) and 153/1800 decision flips (8.5 % > 1 %):
not allowed; float32 stays the only engine."""
import os, time, json
os.environ['TF_CPP_MIN_LOG_LEVEL']='2'
from pathlib import Path
import numpy as np, tensorflow as tf
from arcade_pacs.model import engine as E
from arcade_pacs.model.build import measure_rates
from arcade_pacs.model.forms import form_path
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.pipeline.tensors import frame_tensors
from arcade_pacs.training.data import load_split
from arcade_pacs.training.evaluate import score_split, window_auc
data = Path('/work/shared/data/arcade')
thr = ModelInfo.read(Path('models/arcade_effb0.keras')).threshold
train = load_split(data, 'train', 60)
rng = np.random.default_rng(0)
calib = np.concatenate([frame_tensors(im.astype(np.float32)/255.0) for im in train.images])
calib = calib[rng.permutation(len(calib))[:300]]
def rep():
    for x in calib: yield [x[None]]
t=time.time()
conv = tf.lite.TFLiteConverter.from_saved_model('/tmp/wt10exp/sm')
conv.optimizations = [tf.lite.Optimize.DEFAULT]; conv.representative_dataset = rep
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
conv.inference_input_type = tf.float32; conv.inference_output_type = tf.float32
open('/tmp/wt10exp/int8_cal.tflite','wb').write(conv.convert()); print('convert', time.time()-t, flush=True)
fp32 = E.LiteRTEngine(form_path(Path('models/arcade_effb0.keras')), 0, 4)
int8 = E.LiteRTEngine(Path('/tmp/wt10exp/int8_cal.tflite'), 0, 4); int8.name = 'int8'
val = load_split(data, 'val')
a = score_split(fp32.predict, val); b = score_split(int8.predict, val)
keep = a.labels >= 0
flips = int(((a.window_scores >= thr) != (b.window_scores >= thr)).sum())
res = {'auc_fp32': window_auc(a), 'auc_int8': window_auc(b), 'flips': flips, 'windows': int(a.window_scores.size),
       'max_abs_diff_tta': float(np.abs(a.window_scores-b.window_scores).max()),
       'rates': measure_rates([fp32, int8], calib[:4], seconds=3)}
res['auc_drop'] = res['auc_fp32'] - res['auc_int8']; res['flip_fraction'] = flips / res['windows']
print(json.dumps(res))
