"""The web demo as a Hugging Face Space runs it: a Gradio Space starts `python app.py`.

For a Space, copy this file as `app.py` next to a `requirements.txt` that installs this package (gradio comes with
the Space's SDK). Locally, `python examples/app.py` serves the same page as `sora-diffusers serve` on
http://127.0.0.1:7860. The page is built by `sora_diffusers.app.build_app`; see its docstring for the options.
"""

from sora_diffusers.app import build_app


demo = build_app()  # the model embedded in the package, on CUDA when the machine has a GPU

if __name__ == "__main__":
    demo.launch()
