"""benchmarks/llm_requests.py: llama-server's per-request timings, summed."""

from benchmarks.llm_requests import requests, totals

LOG = """0.36.369.983 I slot launch_slot_: id  6 | task 2 | processing task, is_child = 0
0.36.756.775 I slot print_timing: id  6 | task 2 | prompt eval time =     234.56 ms /    52 tokens (    4.51 ms per token,   221.69 tokens per second)
0.36.756.798 I slot print_timing: id  6 | task 2 |        eval time =     151.25 ms /     8 tokens (   21.61 ms per token,    46.28 tokens per second)
0.36.756.799 I slot print_timing: id  6 | task 2 |       total time =     385.81 ms /    60 tokens
0.45.881.976 I slot print_timing: id  6 | task 11 | prompt eval time =      29.27 ms /     1 tokens (   29.27 ms per token,    34.16 tokens per second)
0.45.882.036 I slot print_timing: id  6 | task 11 |        eval time =      85.31 ms /     8 tokens (   12.19 ms per token,    82.06 tokens per second)
"""  # noqa: E501 - llama-server's own lines (llama.cpp as llama-cpp-python 0.3.36 vendors it)


def test_each_finished_request_gives_its_evaluated_prompt_and_generated_tokens():
    rows = requests(LOG)
    assert rows == [
        {"task": 2, "prompt_tokens": 52, "prompt_ms": 234.56, "generated_tokens": 8, "generated_ms": 151.25},
        {"task": 11, "prompt_tokens": 1, "prompt_ms": 29.27, "generated_tokens": 8, "generated_ms": 85.31},
    ]
    summed = totals(rows)
    assert summed["requests"] == 2 and summed["prompt_tokens"] == 53 and summed["generated_tokens"] == 16
    assert summed["prompt_tokens_by_request"] == [52, 1]
