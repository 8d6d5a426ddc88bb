"""The map on the page: an interactive Plotly figure of the collection, sent once per page
load or layout change, never per search.

A search sends only its :meth:`ui.map.CollectionMap.marks` (the query's position in each
layout and its results' ids, a few hundred bytes) to a hidden ``gr.JSON``; :data:`MAP_JS`, run
once when the page loads, moves the star and rings the results on the figure already drawn
(``Plotly.restyle`` of two small traces). Hovering a photo's point shows its title and dish
type (Plotly's own hover); clicking it opens its recipe and photo below the map (the point's
id goes to :meth:`MapView.open_point` through a hidden button). Gradio's ``gr.Plot`` draws
Plotly with the plotly.js it bundles: nothing is loaded from elsewhere.
"""

from __future__ import annotations

from html import escape

import gradio as gr
import numpy as np
from gradio.components.plot import PlotData

from indexer.search import Searcher
from indexer.store import StoreError
from ui.map import LAYOUTS, CollectionMap
from ui.photos import page_root_url, photo_url

MAP_ID = "recipe-map"  # the gr.Plot's elem_id; the Plotly figure is the div inside it
OPEN_ID = "map-open"  # the hidden button a click on a point presses
HINT = "Hover a point for its title and dish type; click it to open it. ★ your last search"

# Installed once per page: window.recipeMap keeps the last search's marks and applies them to
# whichever figure is drawn (a page load, a layout change, the tab shown later).
MAP_JS = f"""() => {{
  if (window.recipeMap) return;
  const map = window.recipeMap = {{marks: null, drawn: null, clicked: null}};
  const figure = () => document.querySelector('#{MAP_ID} .js-plotly-plot');
  map.show = (marks) => {{ map.marks = marks; map.drawn = null; map.apply(); }};
  map.apply = () => {{
    const gd = figure();
    if (!gd || !window.Plotly || !gd.data || gd.data.length < 3) return;
    if (!gd._recipeClicks) {{
      gd._recipeClicks = true;
      gd.on('plotly_click', (event) => {{
        const point = event.points.find((p) => p.curveNumber === 0);
        if (!point) return;
        map.clicked = point.customdata;
        document.querySelector('#{OPEN_ID}').click();
      }});
    }}
    const dishes = gd.data[0];
    if (map.drawn === dishes && map.applied === map.marks) return;
    if (gd._recipeIds !== dishes.customdata) {{
      gd._recipeIds = dishes.customdata;
      gd._recipeIndex = new Map(dishes.customdata.map((id, i) => [id, i]));
    }}
    const marks = map.marks || {{}};
    const star = (marks.positions || {{}})[(gd.layout.meta || {{}}).layout];
    const hits = (marks.hits || []).map((id) => gd._recipeIndex.get(id))
      .filter((i) => i !== undefined);
    window.Plotly.restyle(gd, {{
      x: [hits.map((i) => dishes.x[i]), star ? [star[0]] : []],
      y: [hits.map((i) => dishes.y[i]), star ? [star[1]] : []],
    }}, [1, 2]);
    map.drawn = dishes;
    map.applied = map.marks;
  }};
  setInterval(map.apply, 300);
}}"""
SHOW_JS = "(marks) => { if (window.recipeMap) window.recipeMap.show(marks); }"
OPEN_JS = "(point) => (window.recipeMap && window.recipeMap.clicked) || point"


class MapView:
    """The map's part of the page: its figures (built once per layout), the note above it,
    a search's marks and the card of a clicked point."""

    def __init__(self, collection_map: CollectionMap | None, searcher: Searcher):
        self.map = collection_map
        self.searcher = searcher
        self._figures: dict[str, PlotData] = {}
        self._ids = set(collection_map.sample.ids) if collection_map else set()

    def replace(self, collection_map: CollectionMap | None) -> None:
        """Show ``collection_map`` from the next page load on (the collection changed)."""
        self._figures, self.map = {}, collection_map
        self._ids = set(collection_map.sample.ids) if collection_map else set()

    def choices(self) -> list[tuple[str, str]]:
        return [(name, key) for key, name in LAYOUTS.items()]

    def show(self, layout: str | None):
        """The figure of ``layout`` ("tsne" or "pca"), or PCA while t-SNE is not ready; the
        note above it; the layout shown (for the page's choice)."""
        if self.map is None:
            return None, "The collection has too few photos for a map.", gr.update()
        if layout not in self.map.layouts:
            layout = "pca"
        if layout not in self._figures:  # the JSON of every point, once per layout
            self._figures[layout] = PlotData(type="plotly", plot=figure(self.map, layout).to_json())
        return self._figures[layout], self.note(layout), gr.update(value=layout)

    def note(self, layout: str) -> str:
        """What the map shows, and where t-SNE stands."""
        shown = f"**{LAYOUTS[layout]}** of {len(self.map):,} photos, coloured by dish type. {HINT}"
        if layout == "tsne" or "tsne" in self.map.layouts:
            return shown
        if not self.map.tsne_done.is_set():
            return f"{shown}  \nt-SNE is being computed in the background; choose it in a moment."
        return f"{shown}  \nNo t-SNE: {self.map.tsne_failed}."

    def marks(self, vector, hits: list[dict], what: str) -> dict | None:
        """What a search sends the map (see :meth:`CollectionMap.marks`)."""
        if self.map is None or vector is None:
            return None
        return self.map.marks(vector, [hit["id"] for hit in hits], what)

    def open_point(self, point_id: str, request: gr.Request | None = None) -> str:
        """The card of a point clicked on the map: its title, dish type, photo and
        ingredients (HTML, every value escaped)."""
        if not point_id or point_id not in self._ids:
            return ""
        fields = ["title", "label", "ingredients"]
        try:
            found = self.searcher.store.retrieve(
                self.searcher.collection, [point_id], fields=fields
            )
        except (ValueError, StoreError):
            found = []
        if not found:
            return ""
        payload = found[0].payload
        title = escape(str(payload.get("title") or "Untitled"))
        dish = escape(str(payload.get("label") or "-").replace("_", " "))
        items = "".join(f"<li>{escape(str(i))}</li>" for i in payload.get("ingredients") or [])
        url = escape(photo_url(point_id, page_root_url(request)))
        return (
            f'<div class="map-card"><img src="{url}" alt="{title}" style="max-height:220px">'
            f"<h3>{title}</h3><p>dish type <b>{dish}</b></p><ul>{items}</ul></div>"
        )


def figure(collection_map: CollectionMap, layout: str):
    """The Plotly figure of one layout: every sampled photo (:func:`_dishes`), then the
    search's results and its star (:func:`_search_marks`), empty until a search."""
    import plotly.graph_objects as go

    dishes = _dishes(collection_map.sample, collection_map.layouts[layout])
    shown = go.Figure([dishes, *_search_marks()])
    shown.update_layout(
        meta={"layout": layout},
        showlegend=False,
        height=620,
        hovermode="closest",
        margin={"l": 8, "r": 8, "t": 8, "b": 8},
        plot_bgcolor="white",
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
    )
    return shown


def _dishes(sample, xy):
    """The collection's sampled photos, coloured by dish type (hover: title and dish type;
    ``customdata``: its id)."""
    import plotly.graph_objects as go

    names = {name: i for i, name in enumerate(sorted(set(sample.labels)))}
    colours = [round((names[label] * 0.618034) % 1, 3) for label in sample.labels]  # apart
    # no markup per point: plotly's JSON writes each "<" as 6 characters
    titles = [escape(title or "-") for title in sample.titles]
    dish_types = [escape(label.replace("_", " ") or "-") for label in sample.labels]
    rounded = _rounded(xy)
    return go.Scatter(
        x=rounded[:, 0].tolist(),
        y=rounded[:, 1].tolist(),
        mode="markers",
        name="dishes",
        customdata=sample.ids,
        text=titles,
        hovertext=dish_types,
        hovertemplate="<b>%{text}</b><br>%{hovertext}<extra></extra>",
        marker={
            "size": 6,
            "color": colours,
            "colorscale": "Turbo",
            "cmin": 0,
            "cmax": 1,
            "opacity": 0.75,
        },
    )


def _search_marks():
    """The two empty traces a search fills: rings on its results, a star on its query."""
    import plotly.graph_objects as go

    results = go.Scatter(
        x=[],
        y=[],
        mode="markers",
        name="results",
        hoverinfo="skip",
        marker={"symbol": "circle-open", "size": 14, "color": "#111", "line": {"width": 2}},
    )
    query = go.Scatter(
        x=[],
        y=[],
        mode="markers",
        name="your query",
        hovertemplate="your query<extra></extra>",
        marker={
            "symbol": "star",
            "size": 24,
            "color": "#111",
            "line": {"color": "white", "width": 1.5},
        },
    )
    return results, query


def _rounded(xy: np.ndarray) -> np.ndarray:
    """Positions to 4 significant digits of the layout's extent: the page's JSON is a third
    shorter, and a thousandth of the map is below a pixel."""
    extent = float(np.abs(xy).max()) or 1.0
    return np.round(xy.astype(np.float64), max(0, 3 - int(np.floor(np.log10(extent)))))


def map_tab(blocks: gr.Blocks, view: MapView, marks: gr.JSON) -> None:
    """The Map tab's contents and events: the layout choice, the note, the figure (of the
    preferred layout, on each page load) and the card of a clicked point; ``marks`` (each
    search's output) moves the star, in the browser."""
    layout = gr.Radio(view.choices(), value="tsne", label="Layout", elem_id="map-layout")
    note = gr.Markdown(elem_id="map-note")
    with gr.Row():
        plot = gr.Plot(label="The collection", elem_id=MAP_ID, scale=3)
        with gr.Column(scale=1, min_width=240):
            card = gr.HTML(elem_id="map-card")
    point = gr.Textbox(visible=False)  # the clicked point's id, from MAP_JS
    opened = gr.Button("Open", visible="hidden", elem_id=OPEN_ID)
    shown = [plot, note, layout]
    blocks.load(None, None, None, js=MAP_JS)
    blocks.load(view.show, [layout], shown, api_visibility="private")
    layout.input(view.show, [layout], shown, api_visibility="private")
    opened.click(view.open_point, [point], [card], js=OPEN_JS, api_visibility="private")
    marks.change(None, [marks], None, js=SHOW_JS)
