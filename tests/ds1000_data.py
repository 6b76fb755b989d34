"""Small DS-1000 problems in its current release format (xlangai/DS-1000 `test.jsonl`): the three
prompt shapes (two `<code>` blocks, a function to complete, Matplotlib's "# SOLUTION START"), a
`test_string` check, and a library the sandbox image lacks."""

from __future__ import annotations

import json
from pathlib import Path

_CONTEXT = '''import numpy as np
import copy
import tokenize, io


def generate_test_case(test_case_id):
    def define_test_input(test_case_id):
        if test_case_id == 1:
            a = np.array([[1, 2], [3, 4]])
        elif test_case_id == 2:
            a = np.arange(12).reshape(3, 4)
        return a

    def generate_ans(data):
        a = data
        result = a.sum(axis=0)
        return result

    test_input = define_test_input(test_case_id)
    expected_result = generate_ans(copy.deepcopy(test_input))
    return test_input, expected_result


def exec_test(result, ans):
    np.testing.assert_array_equal(result, ans)
    return 1


exec_context = r"""
import numpy as np
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(2):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)


def test_string(solution: str):
    tokens = []
    for token in tokenize.tokenize(io.BytesIO(solution.encode("utf-8")).readline):
        tokens.append(token.string)
    assert "while" not in tokens
'''

_FUNCTION_CONTEXT = '''import numpy as np
import copy


def generate_test_case(test_case_id):
    a = np.array([3, 1, 2]) * test_case_id
    return a, np.sort(a)


def exec_test(result, ans):
    np.testing.assert_array_equal(result, ans)
    return 1


exec_context = r"""
import numpy as np
a = test_input
def f(a):
[insert]
result = f(a)
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(2):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
'''

_PANDAS_CONTEXT = '''import pandas as pd
import copy


def generate_test_case(test_case_id):
    df = pd.DataFrame({"a": [3, 1, 2], "b": ["x", "y", "z"]})
    return df, df.sort_values("a").reset_index(drop=True)


def exec_test(result, ans):
    try:
        pd.testing.assert_frame_equal(result, ans, check_dtype=False)
        return 1
    except Exception:
        return 0


exec_context = r"""
import pandas as pd
df = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    for i in range(1):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
'''

_TORCH_CONTEXT = '''import torch


def generate_test_case(test_case_id):
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    return a, a.t().contiguous()


def exec_test(result, ans):
    assert isinstance(result, torch.Tensor) and result.dtype == ans.dtype
    torch.testing.assert_close(result, ans)
    return 1


exec_context = r"""
import torch
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    test_input, expected_result = generate_test_case(1)
    test_env = {"test_input": test_input}
    exec(code, test_env)
    assert exec_test(test_env["result"], expected_result)
'''

_TF_CONTEXT = '''import tensorflow as tf


def generate_test_case(test_case_id):
    a = tf.constant([[1, 2], [3, 4]], dtype=tf.int32)
    return a, tf.reduce_sum(a, axis=1)


def exec_test(result, ans):
    assert tf.is_tensor(result) and result.dtype == ans.dtype
    assert tf.reduce_all(result == ans)
    return 1


exec_context = r"""
import tensorflow as tf
a = test_input
[insert]
"""


def test_execution(solution: str):
    code = exec_context.replace("[insert]", solution)
    test_input, expected_result = generate_test_case(1)
    test_env = {"test_input": test_input}
    exec(code, test_env)
    assert exec_test(test_env["result"], expected_result)
'''

_PLOT_CONTEXT = '''import matplotlib
import matplotlib.pyplot as plt


def test_execution(solution: str):
    exec_context = "import numpy as np\\nimport matplotlib.pyplot as plt\\nx = np.arange(10)\\n[insert]\\n"
    exec(exec_context.replace("[insert]", solution), {})
    ax = plt.gca()
    assert len(ax.get_lines()) == 1
'''

_PLOT_IMAGE_CONTEXT = '''import numpy as np
import matplotlib
import matplotlib.pyplot as plt
from PIL import Image


def skip_plt_cmds(l):
    return all(p not in l for p in ["plt.show()", "plt.clf()", "plt.close()", "savefig"])


def generate_test_case(test_case_id):
    x = np.arange(10)
    y = np.arange(10)
    plt.plot(x, y, label="y")
    plt.title("line")
    plt.legend()
    plt.savefig("ans.png", bbox_inches="tight")
    plt.close()
    return None, None


def exec_test(result, ans):
    code_img = np.array(Image.open("output.png"))
    oracle_img = np.array(Image.open("ans.png"))
    sample_image_stat = code_img.shape == oracle_img.shape and np.allclose(code_img, oracle_img)
    if sample_image_stat:
        return 1
    ax = plt.gca()
    assert ax.get_title() == "line"
    assert ax.get_legend().get_texts()[0].get_text() == "y"
    return 1


exec_context = r"""
import numpy as np
import matplotlib.pyplot as plt
x = np.arange(10)
y = np.arange(10)
[insert]
plt.savefig('output.png', bbox_inches ='tight')
result = None
"""


def test_execution(solution: str):
    solution = "\\n".join(filter(skip_plt_cmds, solution.split("\\n")))
    code = exec_context.replace("[insert]", solution)
    for i in range(1):
        test_input, expected_result = generate_test_case(i + 1)
        test_env = {"test_input": test_input}
        exec(code, test_env)
        assert exec_test(test_env["result"], expected_result)
'''

ROWS = [
    {"prompt": ("Problem:\nI have a 2D numpy array\na = np.array([[1, 2], [3, 4]])\n"
                "How do I sum each column?\n\nA:\n<code>\nimport numpy as np\na = np.array([[1, 2], [3, 4]])\n</code>\n"
                "result = ... # put solution in this variable\nBEGIN SOLUTION\n<code>\n"),
     "reference_code": "result = a.sum(axis=0)\n",
     "metadata": {"problem_id": 291, "library_problem_id": 0, "library": "Numpy", "test_case_cnt": 2,
                  "perturbation_type": "Origin", "perturbation_origin_id": 0},
     "code_context": _CONTEXT},
    {"prompt": ("Problem:\nSort an array.\n\nA:\n<code>\nimport numpy as np\nexample_a = np.array([3, 1, 2])\n"
                "def f(a = example_a):\n    # return the solution in this function\n    # result = f(a)\n"
                "    ### BEGIN SOLUTION"),
     "reference_code": "    return np.sort(a)\n",
     "metadata": {"problem_id": 292, "library_problem_id": 1, "library": "Numpy", "test_case_cnt": 2,
                  "perturbation_type": "Surface", "perturbation_origin_id": 0},
     "code_context": _FUNCTION_CONTEXT},
    {"prompt": "import numpy as np\nimport matplotlib.pyplot as plt\n\nx = np.arange(10)\n\n# plot x\n"
               "# SOLUTION START\n",
     "reference_code": "plt.plot(x)\n",
     "metadata": {"problem_id": 510, "library_problem_id": 0, "library": "Matplotlib", "test_case_cnt": 1,
                  "perturbation_type": "Origin", "perturbation_origin_id": 510},
     "code_context": _PLOT_CONTEXT},
    {"prompt": "import numpy as np\nimport matplotlib.pyplot as plt\n\nx = np.arange(10)\ny = np.arange(10)\n\n"
               "# plot y over x, title it 'line', legend 'y'\n# SOLUTION START\n",
     "reference_code": "plt.plot(x, y, label='y')\nplt.title('line')\nplt.legend()\n",
     "metadata": {"problem_id": 511, "library_problem_id": 1, "library": "Matplotlib", "test_case_cnt": 1,
                  "perturbation_type": "Origin", "perturbation_origin_id": 511},
     "code_context": _PLOT_IMAGE_CONTEXT},
    {"prompt": "Problem:\nMake a frame.\n\nA:\n<code>\nimport pandas as pd\n</code>\nresult = ... # put solution in "
               "this variable\nBEGIN SOLUTION\n<code>\n",
     "reference_code": "result = df.sort_values('a').reset_index(drop=True)\n",
     "metadata": {"problem_id": 0, "library_problem_id": 0, "library": "Pandas", "test_case_cnt": 1,
                  "perturbation_type": "Origin", "perturbation_origin_id": 0},
     "code_context": _PANDAS_CONTEXT},
    {"prompt": "Problem:\nTranspose a tensor.\n\nA:\n<code>\nimport torch\na = load_data()\n</code>\n"
               "result = ... # put solution in this variable\nBEGIN SOLUTION\n<code>\n",
     "reference_code": "result = a.t()\n",
     "metadata": {"problem_id": 932, "library_problem_id": 0, "library": "Pytorch", "test_case_cnt": 1,
                  "perturbation_type": "Origin", "perturbation_origin_id": 932},
     "code_context": _TORCH_CONTEXT},
    {"prompt": "Problem:\nSum rows.\n\nA:\n<code>\nimport tensorflow as tf\na = load_data()\n</code>\nresult = ... # "
               "put solution in this variable\nBEGIN SOLUTION\n<code>\n",
     "reference_code": "result = tf.reduce_sum(a, axis=1)\n",
     "metadata": {"problem_id": 664, "library_problem_id": 0, "library": "Tensorflow", "test_case_cnt": 1,
                  "perturbation_type": "Semantic", "perturbation_origin_id": 664},
     "code_context": _TF_CONTEXT},
]


def write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path
