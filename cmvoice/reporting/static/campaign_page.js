/* The cmvoice campaign page's charts, drawn with the inlined uPlot from the page's JSON block.
 * window.cmvoiceCampaignPage tells tests (and curious operators) what was drawn:
 * {ready: true, error: null | "message", charts: {placed: uPlot, outcomes: uPlot}}. */
(function () {
  "use strict";
  var page = { ready: false, error: null, charts: {} };
  window.cmvoiceCampaignPage = page;

  var CHART_HEIGHT_PX = 240;

  function utc(seconds) {
    return uPlot.tzDate(new Date(seconds * 1e3), "Etc/UTC");
  }

  function widthOf(element) {
    return Math.max(element.clientWidth, 320);
  }

  var MINUTE_S = 60;
  // Tick steps of the minute axis: whole minutes and up (seconds would repeat one label).
  var MINUTE_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080].map(
    function (minutes) { return minutes * MINUTE_S; }
  );
  var timeOfDay = uPlot.fmtDate("{HH}:{mm}");
  var day = uPlot.fmtDate("{YYYY}-{MM}-{DD}");

  // From zero, with a little headroom, and never an empty range.
  function fromZero(u, min, max) {
    return [0, Math.max(max, 1) * 1.1];
  }

  // Half a minute either side, so the first and last bars are whole. With a single minute,
  // uPlot hands a time scale max = min + 86400 / ms (1,000 days with seconds): use min alone.
  function padded(u, min, max) {
    var last = u.data[0].length === 1 ? min : max;
    return [min - MINUTE_S / 2, last + MINUTE_S / 2];
  }

  // 24-hour times; the date under the first tick and under each new day's.
  function timeTicks(u, splits) {
    var previous = null;
    return splits.map(function (seconds) {
      var date = utc(seconds);
      var label = timeOfDay(date);
      if (day(date) !== previous) {
        previous = day(date);
        label += "\n" + previous;
      }
      return label;
    });
  }

  function minuteValue(u, seconds) {
    return seconds == null ? "--" : day(utc(seconds)) + " " + timeOfDay(utc(seconds));
  }

  function options(element, series) {
    return {
      width: widthOf(element),
      height: CHART_HEIGHT_PX,
      tzDate: utc,
      cursor: { sync: { key: "cmvoice-campaign" } },
      scales: { x: { time: true, range: padded }, y: { range: fromZero } },
      axes: [{ values: timeTicks, incrs: MINUTE_STEPS_S, size: 56 }, { label: "calls", size: 56 }],
      series: [{ label: "minute (UTC)", value: minuteValue }].concat(series),
    };
  }

  function drawPlaced(data, element) {
    var bars = uPlot.paths.bars({ size: [0.8, 48] });
    // Fill only: an outline would draw a minute with no calls as a line along the axis.
    var series = [{
      label: "placed",
      stroke: data.placed_color,
      width: 0,
      fill: data.placed_color + "cc",
      paths: bars,
      points: { show: false },
    }];
    return new uPlot(options(element, series), [data.x, data.placed], element);
  }

  function drawOutcomes(data, element) {
    // A line needs two minutes: a campaign of one minute shows its outcomes as points.
    var single = data.x.length === 1;
    var series = data.outcomes.map(function (outcome) {
      var points = { show: single, size: 10, fill: outcome.color };
      return { label: outcome.label, stroke: outcome.color, width: 2, points: points };
    });
    var columns = [data.x].concat(data.outcomes.map(function (outcome) { return outcome.y; }));
    return new uPlot(options(element, series), columns, element);
  }

  function resize() {
    Object.keys(page.charts).forEach(function (name) {
      var chart = page.charts[name];
      chart.setSize({ width: widthOf(chart.root.parentNode), height: CHART_HEIGHT_PX });
    });
  }

  try {
    var data = JSON.parse(document.getElementById("campaign-data").textContent);
    var placed = document.getElementById("chart-placed");
    var outcomes = document.getElementById("chart-outcomes");
    if (placed && data.x.length) {
      page.charts.placed = drawPlaced(data, placed);
    }
    if (outcomes && data.x.length && data.outcomes.length) {
      page.charts.outcomes = drawOutcomes(data, outcomes);
    }
    window.addEventListener("resize", resize);
  } catch (error) {
    page.error = String(error);
    throw error;
  } finally {
    page.ready = true;
  }
})();
