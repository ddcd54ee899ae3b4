import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCode } from '../core/error-codes.ts';
import type { Logger } from '../core/logger.ts';
import { TypeUrl } from '../workload-api/proto.ts';
import type { ResourceSnapshot } from '../workload-api/snapshot.ts';
import { addressHandler } from '../workload-api/store-handlers.ts';
import { WorkloadStore } from '../workload-api/store.ts';
import type { Service, Workload } from '../workload-api/types.ts';
import type { Gateway, Pod } from './kube-objects.ts';
import { buildMeshGraph, type MeshGraph, type ScrapeInput, type WaypointInput } from './mesh-graph.ts';
import { DEFAULT_SCRAPE, discoverMeshTargets, meshTargetsOrThrow, scrapeTargets, type ScrapeOptions } from './mesh-scrape.ts';
import type { Translator } from './translator.ts';
import { isWaypointGateway } from './waypoint.ts';

/**
 * The control plane's live mesh page, on the monitoring port: `GET /mesh` is a self-contained HTML page (no
 * external scripts, fonts or styles; it talks only to its own origin) that polls `GET /mesh.json` every 2 s and
 * draws the graph of mesh-graph.ts as SVG. The JSON is built when asked: the workloads and services decoded from
 * the xDS snapshot (what the data plane is served), the waypoint Gateways, and a scrape of the configured metrics
 * URLs, cached for `cacheMs` so several open pages cost one scrape. docs/mesh-page.md describes the JSON.
 */

export interface MeshPageOptions {
  readonly snapshot: ResourceSnapshot;
  readonly translator: Translator;
  readonly targets: readonly string[];
  readonly logger: Logger;
  /** How long one graph is reused (1000 ms). */
  readonly cacheMs?: number;
  /** Also scrape the ztunnel and waypoint pods with Prometheus scrape annotations (true). */
  readonly discover?: boolean;
  readonly scrape?: ScrapeOptions;
}

export interface MeshJson extends MeshGraph {
  /** ISO time the graph was built. */
  readonly generatedAt: string;
}

export interface MeshPage {
  /** Replaces the configured URLs (checked: absolute http/https; throws `CP_MESH_TARGET_INVALID`). */
  setTargets(urls: readonly string[]): void;
  /** The configured URLs. */
  targets(): readonly string[];
  /** What a scrape reads now: the configured URLs, then the ztunnel and waypoint pods found among the objects. */
  scrapeList(): readonly string[];
  /** The current graph (cached for `cacheMs`). */
  graph(): Promise<MeshJson>;
  /** Serves `/mesh` and `/mesh.json`; false for any other path (the caller answers it). */
  route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>;
}

interface Decoded {
  readonly version: number;
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
}

export function createMeshPage(options: MeshPageOptions): MeshPage {
  const log = options.logger;
  const cacheMs = options.cacheMs ?? 1000;
  let targets = meshTargetsOrThrow(options.targets);
  let decoded: Decoded | undefined;
  let cached: { at: number; key: string; graph: Promise<MeshJson> } | undefined;
  const down = new Set<string>();

  /** The snapshot's addresses as a ztunnel holds them: through the same xDS handler, into a store. */
  const mesh = (): Decoded => {
    const version = options.snapshot.version;
    if (decoded?.version === version) return decoded;
    const store = new WorkloadStore();
    const resources = [...options.snapshot.get(TypeUrl.address)].map(([name, entry]) => ({ name, version: entry.version, typeUrl: TypeUrl.address, value: entry.value }));
    for (const rejected of addressHandler(store).handle(resources, [])) {
      log.warn({ code: ErrorCode.CP_INVALID_OBJECT, name: rejected.name, err: rejected.reason }, 'mesh page: an address in the snapshot does not convert; left out');
    }
    decoded = { version, workloads: store.allWorkloads(), services: store.allServices() };
    return decoded;
  };

  const waypoints = (): WaypointInput[] =>
    (options.translator.objectsOf('Gateway') as Gateway[])
      .filter((gw) => isWaypointGateway(options.translator.view, gw))
      .map((gw) => ({
        name: gw.metadata?.name ?? '',
        namespace: gw.metadata?.namespace ?? '',
        addresses: (gw.status?.addresses ?? []).map((a) => a.value ?? '').filter((v) => v !== ''),
      }));

  const build = async (urls: readonly string[]): Promise<MeshJson> => {
    const scrapes: ScrapeInput[] = await scrapeTargets(urls, options.scrape ?? DEFAULT_SCRAPE);
    for (const s of scrapes) {
      // Logged when a target goes down or comes back, not at every poll.
      if (!s.up && !down.has(s.url)) {
        down.add(s.url);
        log.info({ code: ErrorCode.CP_MESH_SCRAPE_FAILED, target: s.url, err: s.error }, 'mesh page: a metrics target is down');
      } else if (s.up && down.delete(s.url)) log.info({ target: s.url }, 'mesh page: a metrics target is back');
    }
    const { workloads, services } = mesh();
    const graph = buildMeshGraph({
      workloads,
      services,
      waypoints: waypoints(),
      scrapes,
      domainSuffix: options.translator.settings.domainSuffix,
      trustDomain: options.translator.settings.trustDomain,
    });
    return { generatedAt: new Date().toISOString(), ...graph };
  };

  const scrapeList = (): readonly string[] => {
    if (options.discover === false) return targets;
    const isWaypoint = (namespace: string, name: string): boolean => {
      const gw = options.translator.object('Gateway', namespace, name) as Gateway | undefined;
      return gw !== undefined && isWaypointGateway(options.translator.view, gw);
    };
    const discovered = discoverMeshTargets(options.translator.objectsOf('Pod') as Pod[], options.translator.settings.systemNamespace, isWaypoint);
    return [...targets, ...discovered.filter((url) => !targets.includes(url))];
  };

  const graph = (): Promise<MeshJson> => {
    const now = Date.now();
    const urls = scrapeList();
    const key = urls.join('\n');
    if (cached && cached.key === key && now - cached.at < cacheMs) return cached.graph;
    const next = { at: now, key, graph: build(urls) };
    cached = next;
    // A failed build (a bug) is not cached.
    next.graph.catch(() => {
      if (cached === next) cached = undefined;
    });
    return next.graph;
  };

  return {
    setTargets(urls) {
      targets = meshTargetsOrThrow(urls);
      const now = scrapeList();
      for (const url of down) if (!now.includes(url)) down.delete(url);
    },
    targets: () => targets,
    scrapeList,
    graph,
    async route(req, res, url) {
      if (url.pathname !== '/mesh' && url.pathname !== '/mesh.json') return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', allow: 'GET' });
        res.end('method not allowed\n');
        return true;
      }
      if (url.pathname === '/mesh') {
        res.writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'content-length': Buffer.byteLength(MESH_HTML),
          'content-security-policy': MESH_CSP,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
        });
        res.end(req.method === 'HEAD' ? undefined : MESH_HTML);
        return true;
      }
      const body = JSON.stringify(await graph());
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return true;
    },
  };
}

/**
 * The page's script. Plain browser JavaScript (no template literals, so it sits in this file as-is). The layout
 * is deterministic: the Kubernetes nodes as columns in name order, each a box of its workloads (and the
 * waypoints running there), and between the first half of the nodes and the rest a column of what is not on a
 * node (waypoints, services, callers outside the mesh). Metric values reach the DOM only through textContent.
 */
const SCRIPT = String.raw`
'use strict';
var NS = 'http://www.w3.org/2000/svg';
var W = 230, H = 74, GAP = 16, PAD = 16, HEAD = 30, COL_GAP = 200;
var svg = document.getElementById('mesh');
var statusEl = document.getElementById('status');
var targetsEl = document.getElementById('targets');
var last = '';

function el(name, attrs, parent) {
  var e = document.createElementNS(NS, name);
  for (var k in attrs) e.setAttribute(k, String(attrs[k]));
  if (parent) parent.appendChild(e);
  return e;
}
function text(parent, x, y, s, cls) {
  var t = el('text', { x: x, y: y, 'class': cls || '' }, parent);
  t.textContent = s;
  return t;
}
function short(s, n) { return s.length > n ? s.slice(0, n - 1) + '\u2026' : s; }
function n(v) { return Math.round(v).toLocaleString('en-US'); }
function plural(k, word) { return k + ' ' + word + (k === 1 ? '' : 's'); }

function layout(g) {
  var pos = {};
  var cols = [];
  var edgeEnds = {};
  g.edges.forEach(function (e) { edgeEnds[e.from] = true; edgeEnds[e.to] = true; });
  var nodeCols = g.nodes.map(function (node) {
    var items = node.workloads.map(function (id) { return { id: id, kind: 'workload' }; })
      .concat(node.waypoints.map(function (id) { return { id: id, kind: 'waypoint' }; }));
    return { title: node.name || '(no node)', items: items, boxed: true };
  });
  var middle = { title: 'waypoints \u00b7 services \u00b7 outside', boxed: false, items: [] };
  g.waypoints.forEach(function (w) { if (!w.node) middle.items.push({ id: w.id, kind: 'waypoint' }); });
  g.services.forEach(function (s) { if (edgeEnds[s.id]) middle.items.push({ id: s.id, kind: 'service' }); });
  g.external.forEach(function (x) { middle.items.push({ id: x.id, kind: 'external' }); });
  var half = Math.ceil(nodeCols.length / 2);
  cols = nodeCols.slice(0, half);
  if (middle.items.length > 0) cols.push(middle);
  cols = cols.concat(nodeCols.slice(half));
  var x = PAD;
  var height = 0;
  cols.forEach(function (c, index) {
    c.index = index;
    c.x = x;
    var y = PAD + HEAD;
    c.items.forEach(function (it) {
      pos[it.id] = { x: x + PAD, y: y + PAD, w: W, h: H, col: c, kind: it.kind };
      y += H + GAP;
    });
    c.h = Math.max(y - PAD + PAD, PAD + HEAD + H);
    c.w = W + 2 * PAD;
    height = Math.max(height, c.h + PAD * 2);
    x += c.w + COL_GAP;
  });
  // Room on the right for the arcs between boxes of the last column.
  return { pos: pos, cols: cols, width: Math.max(x - COL_GAP + PAD + 110, 400), height: height + 40 };
}

/** A path through the points pts with its corners rounded by r. */
function rounded(pts, r) {
  var d = 'M' + pts[0][0] + ',' + pts[0][1];
  for (var i = 1; i < pts.length - 1; i++) {
    var p = pts[i], a = pts[i - 1], b = pts[i + 1];
    var ra = Math.min(r, Math.abs(p[0] - a[0]) / 2 + Math.abs(p[1] - a[1]) / 2);
    var rb = Math.min(r, Math.abs(b[0] - p[0]) / 2 + Math.abs(b[1] - p[1]) / 2);
    var inX = p[0] - Math.sign(p[0] - a[0]) * ra, inY = p[1] - Math.sign(p[1] - a[1]) * ra;
    var outX = p[0] + Math.sign(b[0] - p[0]) * rb, outY = p[1] + Math.sign(b[1] - p[1]) * rb;
    d += ' L' + inX + ',' + inY + ' Q' + p[0] + ',' + p[1] + ' ' + outX + ',' + outY;
  }
  var last = pts[pts.length - 1];
  return d + ' L' + last[0] + ',' + last[1];
}

function edgeLines(e) {
  var lines = [];
  if (e.tcp) {
    lines.push({ s: (e.tcp.mtls > 0 ? '\ud83d\udd12 mTLS ' : 'plaintext ') + n(e.tcp.opened) + ' conn', cls: e.tcp.mtls > 0 ? 'l-mtls' : 'l-plain' });
    if (e.tcp.mtls > 0 && e.tcp.plaintext > 0) lines.push({ s: 'plaintext ' + n(e.tcp.plaintext), cls: 'l-plain' });
    if (e.tcp.denied > 0) lines.push({ s: '\u2716 denied ' + n(e.tcp.denied), cls: 'l-deny' });
    if (e.tcp.failed > 0) lines.push({ s: 'failed ' + n(e.tcp.failed), cls: 'l-deny' });
  }
  if (e.http) {
    lines.push({ s: 'HTTP ' + n(e.http.requests) + ' req', cls: 'l-http' });
    var other = Object.keys(e.http.codes).filter(function (c) { return c[0] !== '2' && c !== '403'; });
    if (other.length) lines.push({ s: other.map(function (c) { return c + '\u00d7' + n(e.http.codes[c]); }).join(' '), cls: 'l-deny' });
    if (e.http.denied > 0) lines.push({ s: '\u2716 403 denied ' + n(e.http.denied), cls: 'l-deny' });
    e.http.split.forEach(function (s) { lines.push({ s: s.version + ' ' + s.percent + '%', cls: 'l-split' }); });
  }
  return lines;
}

function draw(g) {
  var L = layout(g);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  svg.setAttribute('width', L.width);
  svg.setAttribute('height', L.height);
  svg.setAttribute('viewBox', '0 0 ' + L.width + ' ' + L.height);
  var defs = el('defs', {}, svg);
  [['arrow', '#2b7a3d'], ['arrow-plain', '#777'], ['arrow-deny', '#c62828'], ['arrow-http', '#1f5fa8']].forEach(function (m) {
    var mk = el('marker', { id: m[0], viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
    el('path', { d: 'M0,0 L10,5 L0,10 z', fill: m[1] }, mk);
  });
  var byId = {};
  g.workloads.forEach(function (w) { byId[w.id] = w; });
  g.services.forEach(function (s) { byId[s.id] = s; });
  g.waypoints.forEach(function (w) { byId[w.id] = w; });
  g.external.forEach(function (x) { byId[x.id] = x; });

  // Node frames, then the edges, then the boxes, then the labels over everything.
  var frames = el('g', {}, svg);
  var lines = el('g', {}, svg);
  var boxes = el('g', {}, svg);
  L.cols.forEach(function (c) {
    if (c.boxed) el('rect', { x: c.x, y: PAD, width: c.w, height: c.h, rx: 10, 'class': 'node' }, frames);
    text(frames, c.x + PAD, PAD + 20, c.boxed ? 'node ' + c.title : c.title, 'node-title');
  });
  Object.keys(L.pos).sort().forEach(function (id) {
    var p = L.pos[id], o = byId[id] || {};
    var gr = el('g', { 'class': 'box ' + p.kind, 'data-id': id }, boxes);
    el('rect', { x: p.x, y: p.y, width: p.w, height: p.h, rx: 6 }, gr);
    var title = el('title', {}, gr);
    if (p.kind === 'workload') {
      title.textContent = o.identity + '\n' + o.ips.join(', ');
      text(gr, p.x + 8, p.y + 17, short(o.name, 30), 'b-name');
      text(gr, p.x + 8, p.y + 32, short(o.namespace + ' \u00b7 ' + o.app + ' ' + o.version, 34), 'b-sub');
      text(gr, p.x + 8, p.y + 47, short(o.identity.replace('spiffe://', ''), 36), 'b-id');
      text(gr, p.x + 8, p.y + 62, short(o.ips.join(', ') + (o.waypoint ? '  \u2192 ' + o.waypoint.slice(3) : ''), 36), 'b-sub');
      text(gr, p.x + p.w - 8, p.y + 17, o.captured ? 'HBONE' : 'not captured', o.captured ? 'b-badge' : 'b-badge off');
    } else if (p.kind === 'waypoint') {
      title.textContent = o.identity + '\n' + o.addresses.join(', ');
      text(gr, p.x + 8, p.y + 17, short('waypoint ' + o.name, 30), 'b-name');
      text(gr, p.x + 8, p.y + 32, short(o.namespace + ' \u00b7 ' + (o.addresses.join(', ') || 'no address'), 34), 'b-sub');
      text(gr, p.x + 8, p.y + 47, short(plural(o.services.length, 'service') + ', ' + plural(o.workloads.length, 'workload') + ' bound', 36), 'b-sub');
      var splits = o.splits.map(function (s) { return s.versions.map(function (v) { return v.version + ' ' + v.percent + '%'; }).join(' / '); }).join('; ');
      text(gr, p.x + 8, p.y + 62, short(splits ? 'split ' + splits : 'L7', 36), 'b-split');
    } else if (p.kind === 'service') {
      title.textContent = o.hostname;
      text(gr, p.x + 8, p.y + 17, short('service ' + o.name, 30), 'b-name');
      text(gr, p.x + 8, p.y + 32, short(o.namespace + ' \u00b7 ' + o.vips.join(', '), 34), 'b-sub');
      text(gr, p.x + 8, p.y + 47, short(plural(o.endpoints.length, 'endpoint') + (o.waypoint ? ' \u00b7 via ' + o.waypoint.slice(3) : ''), 36), 'b-sub');
    } else {
      title.textContent = o.label;
      text(gr, p.x + 8, p.y + 17, short(o.label || id, 30), 'b-name');
      text(gr, p.x + 8, p.y + 32, 'not in the mesh', 'b-sub');
    }
  });

  // Edges between columns that are not neighbours run below the frames, each in its own lane, instead of
  // through the boxes of the columns between.
  var routes = [];
  var lanes = 0;
  g.edges.forEach(function (e) {
    var a = L.pos[e.from], b = L.pos[e.to];
    if (!a || !b) return;
    var same = a.col === b.col;
    var right = same || a.x < b.x;
    var channel = !same && Math.abs(a.col.index - b.col.index) > 1;
    routes.push({ e: e, a: a, b: b, same: same, right: right, channel: channel, lane: channel ? lanes++ : -1,
      fromSide: right ? 'r' : 'l', toSide: same ? 'r' : right ? 'l' : 'r' });
  });
  var frameBottom = 0;
  L.cols.forEach(function (c) { frameBottom = Math.max(frameBottom, PAD + c.h); });
  // Lanes far enough apart for their labels to sit on them without touching.
  var laneY = frameBottom + 8, prevHalf = 0;
  routes.forEach(function (r) {
    if (!r.channel) return;
    var half = (edgeLines(r.e).length * 14 + 6) / 2;
    laneY += prevHalf + 6 + half;
    r.laneY = laneY;
    prevHalf = half;
  });
  var height = Math.max(L.height, laneY + prevHalf + 24);
  svg.setAttribute('height', height);
  svg.setAttribute('viewBox', '0 0 ' + L.width + ' ' + height);

  // Each box side spreads its edge ends over its height, ordered by where the other end is.
  var ends = {};
  routes.forEach(function (r) {
    [[r.e.from, r.fromSide, r.b, 'y1'], [r.e.to, r.toSide, r.a, 'y2']].forEach(function (end) {
      var key = end[0] + '|' + end[1];
      (ends[key] = ends[key] || []).push({ r: r, other: r.channel ? 1e6 + r.lane : end[2].y, field: end[3] });
    });
  });
  Object.keys(ends).sort().forEach(function (key) {
    var list = ends[key];
    var box = L.pos[key.slice(0, key.lastIndexOf('|'))];
    list.sort(function (p, q) { return p.other - q.other || (p.r.e.id < q.r.e.id ? -1 : 1); });
    list.forEach(function (p, i) { p.r[p.field] = box.y + box.h * (i + 1) / (list.length + 1); });
  });

  var labels = el('g', {}, svg);
  var placed = Object.keys(L.pos).map(function (id) { var p = L.pos[id]; return { x: p.x, y: p.y, w: p.w, h: p.h }; });
  function free(x, y, w, h) {
    return placed.every(function (q) { return x + w < q.x || q.x + q.w < x || y + h < q.y || q.y + q.h < y; });
  }
  routes.forEach(function (r) {
    var e = r.e, a = r.a, b = r.b, d, mx, my;
    var x1 = r.fromSide === 'r' ? a.x + a.w : a.x;
    var x2 = r.toSide === 'r' ? b.x + b.w : b.x;
    var y1 = r.y1, y2 = r.y2;
    if (r.channel) {
      var step = Math.min(6 * r.lane, COL_GAP / 2 - 20);
      var gx1 = r.right ? a.col.x + a.col.w + 12 + step : a.col.x - 12 - step;
      var gx2 = r.right ? b.col.x - 12 - step : b.col.x + b.col.w + 12 + step;
      var ly = r.laneY;
      d = rounded([[x1, y1], [gx1, y1], [gx1, ly], [gx2, ly], [gx2, y2], [x2, y2]], 8);
      mx = (gx1 + gx2) / 2; my = ly;
    } else if (r.same) {
      var bulge = 50 + Math.abs(y2 - y1) / 3;
      d = 'M' + x1 + ',' + y1 + ' C' + (x1 + bulge) + ',' + y1 + ' ' + (x2 + bulge) + ',' + y2 + ' ' + x2 + ',' + y2;
      mx = x1 + bulge * 0.75; my = (y1 + y2) / 2;
    } else {
      var cx = (x2 - x1) / 2;
      d = 'M' + x1 + ',' + y1 + ' C' + (x1 + cx) + ',' + y1 + ' ' + (x2 - cx) + ',' + y2 + ' ' + x2 + ',' + y2;
      mx = (x1 + x2) / 2; my = (y1 + y2) / 2;
    }
    var allDenied = (e.tcp && e.tcp.opened > 0 && e.tcp.denied >= e.tcp.opened) || (e.http && e.http.requests > 0 && e.http.denied >= e.http.requests);
    var mtls = e.tcp ? e.tcp.mtls > 0 : !!e.http;
    var cls = allDenied ? 'edge deny' : e.tcp ? (mtls ? 'edge mtls' : 'edge plain') : 'edge http';
    var marker = allDenied ? 'arrow-deny' : e.tcp ? (mtls ? 'arrow' : 'arrow-plain') : 'arrow-http';
    var path = el('path', { d: d, 'class': cls, 'marker-end': 'url(#' + marker + ')', 'data-edge': e.id }, lines);
    var t = el('title', {}, path);
    t.textContent = e.from + ' \u2192 ' + e.to + (e.services.length ? '\nservices: ' + e.services.join(', ') : '');
    var ls = edgeLines(e);
    var widest = 0;
    ls.forEach(function (l) { widest = Math.max(widest, l.s.length * 6.2); });
    var bw = widest + 10, bh = ls.length * 14 + 6;
    // The label sits at the middle of its edge, moved up or down until it covers no box and no other label.
    var y = my - bh / 2;
    for (var i = 1; i < 24 && (y < 2 || !free(mx - bw / 2, y, bw, bh)); i++) y = my - bh / 2 + (i % 2 ? 1 : -1) * Math.ceil(i / 2) * (bh / 2 + 4);
    if (y < 2) y = my - bh / 2;
    placed.push({ x: mx - bw / 2, y: y, w: bw, h: bh });
    var lg = el('g', { 'class': 'label', 'data-label': e.id }, labels);
    el('rect', { x: mx - bw / 2, y: y, width: bw, height: bh, rx: 4, 'class': 'label-bg' }, lg);
    ls.forEach(function (l, j) {
      var tt = text(lg, mx, y + 15 + j * 14, l.s, 'lbl ' + l.cls);
      tt.setAttribute('text-anchor', 'middle');
    });
  });
}

function showTargets(g) {
  while (targetsEl.firstChild) targetsEl.removeChild(targetsEl.firstChild);
  if (g.targets.length === 0) {
    var none = document.createElement('li');
    none.textContent = 'no metrics targets configured: only the configuration is drawn';
    targetsEl.appendChild(none);
  }
  g.targets.forEach(function (t) {
    var li = document.createElement('li');
    li.className = t.up ? 'up' : 'down';
    li.textContent = (t.up ? 'up   ' : 'DOWN ') + t.url + (t.up ? ' \u00b7 ' + t.samples + ' samples' : ' \u00b7 ' + (t.error || 'no answer')) +
      (t.problems.length ? ' \u00b7 ' + t.problems.length + ' unreadable lines (' + t.problems[0] + ')' : '');
    targetsEl.appendChild(li);
  });
}

function poll() {
  fetch('mesh.json', { cache: 'no-store' }).then(function (r) {
    if (!r.ok) throw new Error('HTTP ' + r.status);
    return r.text();
  }).then(function (body) {
    var g = JSON.parse(body);
    statusEl.textContent = 'updated ' + new Date(g.generatedAt).toLocaleTimeString() + ' \u00b7 ' + g.workloads.length + ' workloads on ' + g.nodes.length + ' nodes, ' + g.edges.length + ' connections';
    statusEl.className = '';
    var shape = JSON.stringify([g.nodes, g.workloads, g.services, g.waypoints, g.external, g.edges]);
    if (shape !== last) { last = shape; draw(g); }
    showTargets(g);
  }).catch(function (err) {
    statusEl.textContent = 'cannot reach the control plane (' + err.message + '); showing the last view';
    statusEl.className = 'stale';
  }).finally(function () { setTimeout(poll, 2000); });
}
poll();
`;

const STYLE = `
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
header { padding: 10px 16px; background: #1d2430; color: #fff; display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0; }
#status.stale { color: #ffb4a8; }
#legend span { margin-right: 14px; }
.k-mtls { color: #7fd48f; } .k-plain { color: #bbb; } .k-deny { color: #ff8a80; } .k-http { color: #8fb8ff; }
main { padding: 8px 16px; overflow: auto; }
#targets { margin: 4px 0 8px; padding: 0; list-style: none; font: 12px ui-monospace, monospace; }
#targets .down { color: #c62828; }
#targets .up { color: #2b7a3d; }
.node { fill: #fff; stroke: #9aa5b4; stroke-width: 1.5; }
.node-title { font-weight: 600; fill: #4a5566; }
.box rect { fill: #eef4ff; stroke: #6b8cc7; }
.box.waypoint rect { fill: #fff4e0; stroke: #d08a1e; stroke-width: 2; }
.box.service rect { fill: #f1f1f1; stroke: #999; stroke-dasharray: 4 2; }
.box.external rect { fill: #fbeaea; stroke: #c98a8a; }
.b-name { font-weight: 600; }
.b-sub { fill: #4a5566; font-size: 11px; }
.b-id { fill: #2b7a3d; font-size: 10.5px; font-family: ui-monospace, monospace; }
.b-split { fill: #9a5b00; font-size: 11px; font-weight: 600; }
.b-badge { text-anchor: end; font-size: 10px; fill: #2b7a3d; font-weight: 600; }
.b-badge.off { fill: #c62828; }
.edge { fill: none; stroke-width: 2; }
.edge.mtls { stroke: #2b7a3d; }
.edge.plain { stroke: #777; stroke-dasharray: 6 4; }
.edge.http { stroke: #1f5fa8; }
.edge.deny { stroke: #c62828; stroke-dasharray: 3 3; }
.label-bg { fill: #fff; fill-opacity: 0.92; stroke: #d5dae1; }
.lbl { font-size: 11px; }
.l-mtls { fill: #2b7a3d; }
.l-plain { fill: #555; }
.l-deny { fill: #c62828; font-weight: 600; }
.l-http { fill: #1f5fa8; }
.l-split { fill: #9a5b00; font-weight: 600; }
`;

const scriptHash = createHash('sha256').update(SCRIPT).digest('base64');
const styleHash = createHash('sha256').update(STYLE).digest('base64');

/** Only its own origin for data; only this page's script and style (by hash). */
export const MESH_CSP = `default-src 'none'; connect-src 'self'; script-src 'sha256-${scriptHash}'; style-src 'sha256-${styleHash}'; img-src 'self' data:; base-uri 'none'; form-action 'none'`;

export const MESH_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ambient-node mesh</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style>
</head>
<body>
<header><h1>ambient-node mesh</h1><span id="status">loading…</span>
<span id="legend"><span class="k-mtls">━ mTLS (HBONE)</span><span class="k-plain">┅ plaintext</span><span class="k-deny">┅ denied</span><span class="k-http">━ HTTP via waypoint</span></span></header>
<main>
<ul id="targets"></ul>
<svg id="mesh" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="mesh graph"></svg>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
