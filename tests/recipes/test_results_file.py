"""recipes/results_file.py: a recipe rewrites its own section of a shared results file only."""
from conftest import load_recipe


def test_a_section_is_replaced_and_the_other_recipes_sections_are_kept(tmp_path):
    write_section = load_recipe("results_file").write_section
    path = tmp_path / "speed.md"
    write_section(path, "bench_inference", "# Inference\nold")
    write_section(path, "bench_ray", "## Ray\n1 worker")
    write_section(path, "bench_inference", "# Inference\nnew")
    text = path.read_text()
    assert "old" not in text and text.index("new") < text.index("1 worker")
    assert text.count("<!-- bench_ray: begin -->") == text.count("<!-- bench_inference: end -->") == 1
