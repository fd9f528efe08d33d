"""`python -m xitui.worker`: a worker process (xitui/worker/process.py)."""

from xitui.worker.process import main

if __name__ == "__main__":
    main()
