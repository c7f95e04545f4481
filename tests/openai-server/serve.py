"""Serves a GGUF model on loopback through llama.cpp's OpenAI-compatible server.

The Murmur tests start this to exercise the `openai` provider against a real server.
The server comes from the `xllamacpp` package (see requirements.txt; scripts/setup
installs it into .cache/openai-server). Prints one line, `listening http://HOST:PORT`,
once the model is loaded, then serves until killed.

usage: serve.py MODEL.gguf [--ctx N] [--template FILE]
"""

import argparse
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="path of the GGUF model file")
    parser.add_argument("--ctx", type=int, default=2048, help="context length")
    parser.add_argument(
        "--template",
        default=os.path.join(os.path.dirname(__file__), "chat_template.jinja"),
        help="Jinja chat template (default: the tool-capable one next to this file)",
    )
    args = parser.parse_args()

    try:
        import xllamacpp
    except ImportError as err:
        print(f"serve.py: cannot import xllamacpp ({err}); run scripts/setup", file=sys.stderr)
        return 2
    if not os.path.isfile(args.model):
        print(f"serve.py: no model file at {args.model}; run scripts/fetch-model", file=sys.stderr)
        return 2

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.port = 0  # any free port; the address is printed below
    params.n_ctx = args.ctx
    params.n_parallel = 1
    params.use_jinja = True
    params.cpuparams.n_threads = 2
    with open(args.template, encoding="utf-8") as f:
        params.chat_template = f.read()
    server = xllamacpp.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
