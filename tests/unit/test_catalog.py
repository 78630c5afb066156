"""The packaged organelle catalog: 10 networks, each of the 15 compartments once, targets from labels."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.catalog import available_catalogs, check_catalog, load_catalog, network_target
from stainfree.errors import ConfigError
from stainfree.types import COMPARTMENTS, compartment_id


def test_catalog_maps_each_compartment_exactly_once():
    cat = load_catalog()
    assert cat.catalog_version == "organelles_v1" and cat.version == 1
    assert "organelles_v1" in available_catalogs()
    assert len(cat.networks) == 10
    mapped = [c.name for net in cat.networks for c in net.classes]
    assert sorted(mapped) == sorted(COMPARTMENTS) and len(mapped) == 15
    assert sorted(cat.label_priority) == sorted(COMPARTMENTS)
    binary = {n.name for n in cat.networks if n.task == "binary"}
    assert binary == {"LD", "GOLGI", "MITO", "PERO", "EE", "LE", "LYSO"}
    assert cat.network_of("nuclear_reticulum").name == "ER"
    assert cat.network_of("filopodia").name == "PM"
    assert cat.network_of("extracellular").name == "VOLUME"


def test_class_weights_abundant_low_rare_high():
    cat = load_catalog()
    assert cat.network_of("mitochondria").pos_weight == 2.0
    assert cat.network_of("peroxisome").pos_weight == 5.0
    er = cat.network_of("er")
    assert er.output_names == ["background", "er", "nuclear_membrane", "nuclear_reticulum"]
    assert len(er.class_weights) == er.n_outputs == 4
    vol = cat.network_of("nucleus")
    assert vol.background_class is False and vol.output_names == ["nucleus", "cytosol", "extracellular"]


def test_network_targets_from_labels():
    cat = load_catalog()
    labels = np.array([compartment_id(c) for c in COMPARTMENTS] + [0], dtype=np.uint8)
    ld = network_target(cat.network_of("lipid_droplet"), labels)
    assert ld.sum() == 1 and ld[compartment_id("lipid_droplet") - 1] == 1
    er = network_target(cat.network_of("er"), labels)
    assert er[compartment_id("er") - 1] == 1
    assert er[compartment_id("nuclear_reticulum") - 1] == 3
    assert er[compartment_id("golgi") - 1] == 0
    vol = network_target(cat.network_of("cytosol"), labels)
    assert vol[compartment_id("nucleus") - 1] == 0 and vol[compartment_id("nuclear_reticulum") - 1] == 0
    assert vol[compartment_id("mitochondria") - 1] == 1
    assert vol[compartment_id("filopodia") - 1] == 2


def test_broken_catalog_is_config_error(tmp_path):
    cat = load_catalog()
    broken = cat.model_copy(update={"networks": cat.networks[:-1]})
    with pytest.raises(ConfigError, match="no network segments nucleus"):
        check_catalog(broken)
    with pytest.raises(ConfigError, match="unknown catalog"):
        load_catalog("organelles_v99")
    path = tmp_path / "c.yaml"
    path.write_text("version: 1\nnetworks: []\n")
    with pytest.raises(ConfigError):
        load_catalog(path)


def test_catalog_jobs_sample_rare_organelles_and_every_volume_class(tmp_path):
    from stainfree import api

    cat = load_catalog()
    pero = api.catalog_training_job(cat.network_of("peroxisome"), tmp_path / "m.csv", tmp_path, catalog=cat)
    assert pero.data.foreground_fraction == cat.network_of("peroxisome").foreground_fraction > 0
    assert pero.data.foreground_labels is None
    forced = api.catalog_training_job(
        cat.network_of("peroxisome"), tmp_path / "m.csv", tmp_path, catalog=cat, foreground_fraction=0.0
    )
    assert forced.data.foreground_fraction == 0.0
    volume = api.catalog_training_job(cat.network_of("nucleus"), tmp_path / "m.csv", tmp_path, catalog=cat)
    assert volume.data.foreground_labels == [0, 1, 2]  # the nucleus is label 0 of the VOLUME net
    er = api.catalog_training_job(cat.network_of("er"), tmp_path / "m.csv", tmp_path, catalog=cat)
    assert er.data.foreground_labels is None  # label 0 is background


def test_catalog_jobs_keep_the_absolute_ratio_by_default(tmp_path):
    from stainfree import api
    from stainfree.catalog import load_catalog

    cat = load_catalog()
    assert cat.ratio_normalization == "fixed"
    net = cat.network_of("golgi")
    job = api.catalog_training_job(net, tmp_path / "m.csv", tmp_path, catalog=cat)
    assert job.data.ratio_normalization == "fixed"
    median = api.catalog_training_job(
        net, tmp_path / "m.csv", tmp_path, catalog=cat, ratio_normalization="median"
    )
    assert median.data.ratio_normalization == "median"
