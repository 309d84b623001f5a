# DermXAI Space image: serves app.py (the embedded demo model unless MODEL_ID is set) on port 7860.
#   docker build -t dermxai . && docker run --rm -p 7860:7860 dermxai
#   docker run --rm -p 7860:7860 -e MODEL_ID=owner/dermxai dermxai   # a real model from the Hub
# CPU torch wheels by default (a CPU Space); pass --build-arg TORCH_INDEX=<cuda index> for a GPU.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Hugging Face Spaces run containers as uid 1000.
RUN useradd --create-home --uid 1000 user

WORKDIR /home/user/app

COPY --chown=user:user requirements.txt .
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -r requirements.txt

USER 1000:1000
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    HF_HOME=/home/user/.cache/huggingface \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    DERMXAI_EXAMPLES_DIR=/home/user/examples

COPY --chown=user:user . .
# The SynthDerm examples (images + lesion masks) are made once here, not at every cold start.
RUN python -c "import app; print(len(app.load_examples()), 'examples in', app.examples_dir())"

EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GRADIO_SERVER_PORT', '7860') + '/', timeout=4)"]

CMD ["python", "app.py"]
