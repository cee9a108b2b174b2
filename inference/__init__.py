"""The single-video path shared by test_one_video.py, generate_cam.py, app.py and export.py.

    loaded_model.py  LoadedModel: a network (PyTorch or ONNX) with its vocabulary and input settings
    loading.py    checkpoint (or exported ONNX file) -> LoadedModel; main.py builds and loads
                  its model with the same functions
    video.py      a video file or a folder of frames -> RGB frames, as preprocessing resizes them
    recognize.py  frames -> network input -> glosses with their CTC-aligned spans (the JSON result)
    align.py      CTC forced alignment of a decoded sentence
    streaming.py  live recognition: frames in one at a time, glosses out once they are certain
    live.py       a file or camera played into the streaming recogniser in real time (drops counted)
    network.py    the network as one function: frames -> CTC log-probabilities (for export too)
    gradcam.py    Grad-CAM hooks and the drawing of overlays and contact sheets
    explain.py    Grad-CAM of each recognised gloss
    fonts.py      text on images in a font with CJK glyphs
    onnx_model.py ONNX export of network.py and its onnxruntime runner
    cli.py        the command-line options the tools share
    web.py        the web page (Gradio) and the JSON endpoint of app.py
"""
