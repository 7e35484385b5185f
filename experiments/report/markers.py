"""The marker comments around each generated section of a README."""

MARKERS = {
    "results": ("<!-- results:start -->", "<!-- results:end -->"),
    "figures": ("<!-- figures:start -->", "<!-- figures:end -->"),
    "tuned": ("<!-- tuned:start -->", "<!-- tuned:end -->"),
}
