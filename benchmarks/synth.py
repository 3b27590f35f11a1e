"""Rendering mock tiles with GalSim."""

import shutil
import tempfile


class RenderTile:
    timeout = 300

    def setup(self):
        from catbuilder.synth.layout import SkyLayout
        from catbuilder.synth.population import make_population
        from catbuilder.synth.presets import PRESETS

        self.preset = PRESETS["des-like"]
        layout = SkyLayout((20.0, 0.0), 80, 0, 3.0, 80, 8.0)
        self.pop = make_population(layout, 80, 0.0, 0.1, 0.55, 0.05, 1)
        self.tile = layout.tiles("des-like", ("overlap",), 0.263, 1.0)[0]
        self.out = tempfile.mkdtemp(prefix="catbuilder-asv-")

    def teardown(self):
        shutil.rmtree(self.out, ignore_errors=True)

    def time_render_tile_3_bands(self):
        from catbuilder.synth.render import render_tile

        render_tile(self.tile, self.pop, self.preset, ("g", "r", "i"), 1, self.out)
