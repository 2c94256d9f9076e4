"""The papers' numbers as data, and which figure a run is measured against."""

import pytest

from helpers import CONF, make_cfg
from trainer.results.paper_comparison import (
    load_references,
    print_comparison,
    references_for,
    summary_fields,
    target,
)


def test_the_headline_figures_are_in_the_table():
    rows = load_references()
    assert (rows["alexnet_2010_test_10crop"].top5, rows["alexnet_2010_test_10crop"].models) == (17.0, 1)  # "17 %"
    assert (rows["resnet_2015_test_ensemble"].top5, rows["resnet_2015_test_ensemble"].models) == (3.57, 6)  # "3.6 %"
    assert rows["resnet152_2015_val_10crop"].protocol == "tencrop" and rows["lenet5_1998_mnist"].data == "MNIST test"


@pytest.mark.parametrize("experiment", [p.stem for p in (CONF / "experiment").glob("*.yaml")])
def test_each_experiment_names_rows_of_its_model(tmp_path, digits_cache, experiment):
    cfg = make_cfg(tmp_path, digits_cache, f"experiment={experiment}")
    rows = references_for(cfg.model.model_name, list(cfg.compare_with))
    assert rows and all(r.model == cfg.model.model_name for r in rows)
    assert target(rows, "tencrop").single_model  # a single model is never measured against an ensemble


def test_a_single_model_is_measured_against_a_single_model_under_its_protocol():
    resnet152 = references_for("resnet152")
    assert target(resnet152, "tencrop").id == "resnet152_2015_val_10crop"
    assert target(resnet152, "multiscale").id == "resnet152_2015_val_multiscale"  # not the 6-model ensemble
    assert target(resnet152, "multiscale").scales == (224, 256, 384, 480, 640)  # He et al. section 3.4
    # VGG's Table 3 and 4 figures are dense evaluations (section 3.2), none a centre crop
    vgg = references_for("vgg16")
    assert {r.protocol for r in vgg} == {"dense", "multiscale", "multi-crop+dense"}
    assert target(vgg, "dense").id == "vgg16_2014_val_jittered_dense" and target(vgg, "dense").scales == (384,)
    alexnet = references_for("alexnet")
    assert target(alexnet, "center").id == "alexnet_2010_test_center"  # the only centre-crop row
    # the run's data set first: an ILSVRC-2012 val run under 10 crops is measured against the 2012 val row,
    # not the first 10-crop row (ILSVRC-2010 test); without a row of its data, the protocol's
    assert target(alexnet, "tencrop", "imagenet").id == "alexnet_2012_val_10crop"
    assert target(alexnet, "tencrop").id == "alexnet_2010_test_10crop"
    assert target(alexnet, "center", "imagenet").id == "alexnet_2010_test_center"
    assert target(references_for("lenet5"), "center", "mnist").data == "MNIST test"
    # the distortions' 0.8 % is the target of distorted training only, and its first
    assert target(references_for("lenet5"), "center", "mnist", "mnist").id == "lenet5_1998_mnist"
    assert target(references_for("lenet5"), "center", "mnist", "mnist_distorted").id == "lenet5_1998_mnist_distorted"
    fields = summary_fields(42.0, 20.0, "tencrop", [load_references()["alexnet_2012_val_10crop"]])
    assert fields["paper/top1_err"] == 40.7 and fields["gap/top1_err"] == pytest.approx(1.3)
    assert fields["gap/top5_err"] == pytest.approx(1.8) and fields["paper/protocol"] == "tencrop"
    assert "gap/top5_err" not in summary_fields(1.0, 0.0, "center", references_for("lenet5"))  # not reported
    assert summary_fields(1.0, 0.0, "center", references_for("alexnet_onetower")) == {"paper/protocol": "center"}
    # a validation of part of the set: said, and never a gap to the paper's whole-set figure
    partial = summary_fields(42.0, 20.0, "tencrop", [load_references()["alexnet_2012_val_10crop"]],
                             partial="64 of 360 images")
    assert partial["val/partial"] == "64 of 360 images" and partial["paper/top1_err"] == 40.7
    assert not [k for k in partial if k.startswith("gap/")]


def test_torchvisions_recipes_are_the_targets_of_their_own_experiments_only(tmp_path, digits_cache, capsys):
    rows = load_references()
    v1, v2 = rows["resnet50_tv1_val_center"], rows["resnet50_tv2_val_center"]
    assert (v1.top1, v1.top5, v2.top1, v2.top5) == (23.87, 7.138, 19.142, 4.566)  # 100 - torchvision's accuracies
    assert (v1.protocol_label, v2.protocol_label) == ("center 224 of 256", "center 224 of 232")
    resnet50 = references_for("resnet50")
    assert {r.id for r in resnet50} == {"resnet50_2015_val_10crop", v1.id, v2.id}
    # a ResNet-50 of no torchvision experiment, even at its centre crop on ImageNet: He et al.'s row
    assert target(resnet50, "center", "imagenet").id == "resnet50_2015_val_10crop"
    assert target(resnet50, "center", "imagenet", "resnet", "resnet50_2015").id == "resnet50_2015_val_10crop"
    assert target(resnet50, "center", "imagenet", "inception", "resnet50_tv2").id == v2.id
    assert target(resnet50, "center", "imagenet", "inception", "resnet50_tv1").id == v1.id
    for experiment, first in (("resnet50_2015", "resnet50_2015_val_10crop"), ("resnet50_tv2", v2.id)):
        cfg = make_cfg(tmp_path, digits_cache, f"experiment={experiment}", "data=imagenet", "data.root=/x")
        assert set(cfg.compare_with) == {"resnet50_2015_val_10crop", v1.id, v2.id}  # each beside the others
        fields = summary_fields(20.0, 5.0, "center", references_for("resnet50", list(cfg.compare_with)), "imagenet",
                                cfg.data.preset, experiment=cfg.experiment_name)
        assert fields["paper/reference"].startswith(rows[first].paper)
    assert fields["gap/top1_err"] == pytest.approx(20.0 - 19.142)
    print_comparison(20.0, 5.0, "center", "imagenet", references_for("resnet50"), "inception",
                     experiment="resnet50_tv2")
    table = capsys.readouterr().out
    assert "center 224 of 232" in table and "He et al. 2015" in table
    assert "+0.86" in table  # the gap, on the target's row only: V2's (20.0 - 19.142)


def test_an_unknown_row_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"compare_with names \['alexnet_2099'\], which are not in .*papers.yaml; "
                                         r"valid: alexnet_2010_test_10crop"):
        references_for("alexnet", ["alexnet_2099"])
