/*
 * Exact WSOL box extraction at every threshold of a quantised score map, in two union-find passes.
 *
 * The reference (wsolevaluation) runs cv2.findContours(RETR_TREE) once per threshold. The contours
 * it finds are (a) the outer border of every 8-connected foreground component and (b) the border of
 * every hole (4-connected background component not touching the image border). Their
 * cv2.boundingRect boxes are the component's bounding box, and the hole's bounding box grown by one
 * pixel on each side. cv2.contourArea of a component's outer border is Q(filled component), where
 * Q(S) = #(2x2 cells with 4 corners in S) + #(cells with 3 corners in S) / 2; without holes that is
 * Q(component). Among equal areas the reference keeps the contour OpenCV lists first: the component
 * whose first pixel in raster order comes last. (All of this was checked against OpenCV on random
 * masks; the Python tests compare both backends on every run.)
 *
 * Pass 1 adds foreground pixels from the highest level down (8-connectivity). Per component it
 * keeps the bounding box, Q doubled and the first pixel; a global bit-quad count gives the Euler
 * number, hence the number of holes at each cut. Pass 2 adds background pixels from the lowest level
 * up (4-connectivity; the padding ring is "outside"), and is only run as far as needed: up to the
 * highest cut where a hole could matter, i.e. where a hole box could beat the best component box
 * (a hole box lies inside its component's box, so it cannot cover more of a GT box than that box
 * does), or where holes could change which component is largest.
 *
 * Outputs per distinct cut j (cuts ascending):
 *   v2[j]     best IoU of any contour box with any GT box (the multi-contour rule);
 *   v1box[j]  box of the largest contour (single-contour rule);
 *   flag[j]   1 when the area bounds cannot decide the largest contour (rare): the caller runs the
 *             contour search for that cut.
 * Boxes follow the reference: (x, y, min(x + w, W - 1), min(y + h, H - 1)); IoU is inclusive.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t x0, y0, x1, y1; /* pixel bounding box (inclusive, unpadded coordinates) */
    int32_t size;           /* pixels, for union by size */
    int32_t q2;             /* twice Q (pass 1) */
    int32_t first;          /* smallest raster index (pass 1) */
    int32_t touch;          /* connected to the outside (pass 2) */
} Region;

typedef struct {
    int32_t *parent; /* padded grid; -1: not added */
    Region *reg;
    int32_t *active; /* live regions (pass 2: only those not touching the outside) */
    int32_t *pos;    /* position of a root in active, -1 if not listed */
    int32_t n_active;
} Forest;

typedef struct { /* a growable array of int32 tuples */
    int32_t *data;
    Py_ssize_t used, cap;
} Buffer;

/* Per-thread workspace, grown on demand and reused: fresh allocations of a few MB per map cost
 * more in page faults than the computation. */
typedef struct {
    Py_ssize_t cap_pixels, cap_cuts;
    int32_t *parent1, *parent2, *active1, *active2, *pos1, *pos2, *order;
    Region *reg1, *reg2;
    uint8_t *cells;
    double *comp_best, *cover;
    int32_t *holes, *pick_q2;
    uint8_t *need, *amb;
    Py_ssize_t *amb_range; /* per cut j: [2j, 2j+1) records of the other components, if ambiguous */
    Buffer amb_comps;      /* x0, y0, x1, y1, q2 of every component at ambiguous cuts */
    Buffer hole_boxes;     /* x0, y0, x1, y1 of the holes of the cut being resolved */
    Py_ssize_t *band_start, *band_next;
} Workspace;

static __thread Workspace ws;

static int buffer_reserve(Buffer *b, Py_ssize_t n) {
    if (b->used + n <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->used + n) cap *= 2;
    int32_t *grown = (int32_t *)realloc(b->data, sizeof(int32_t) * cap);
    if (!grown) return -1;
    b->data = grown;
    b->cap = cap;
    return 0;
}

static int workspace_reserve(Py_ssize_t n_padded, Py_ssize_t n_cells, Py_ssize_t d) {
    if (n_padded > ws.cap_pixels) {
        int32_t **arrays[] = {&ws.parent1, &ws.parent2, &ws.active1, &ws.active2, &ws.pos1, &ws.pos2, &ws.order};
        for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
            free(*arrays[i]);
            *arrays[i] = (int32_t *)malloc(sizeof(int32_t) * n_padded);
        }
        free(ws.reg1);
        free(ws.reg2);
        free(ws.cells);
        ws.reg1 = (Region *)malloc(sizeof(Region) * n_padded);
        ws.reg2 = (Region *)malloc(sizeof(Region) * n_padded);
        ws.cells = (uint8_t *)malloc(n_cells);
        ws.cap_pixels = n_padded;
        if (!ws.parent1 || !ws.parent2 || !ws.active1 || !ws.active2 || !ws.pos1 || !ws.pos2 || !ws.order ||
            !ws.reg1 || !ws.reg2 || !ws.cells) {
            ws.cap_pixels = 0;
            return -1;
        }
    }
    if (d > ws.cap_cuts) {
        free(ws.comp_best);
        free(ws.cover);
        free(ws.holes);
        free(ws.pick_q2);
        free(ws.need);
        free(ws.amb);
        free(ws.amb_range);
        free(ws.band_start);
        free(ws.band_next);
        ws.band_start = (Py_ssize_t *)malloc(sizeof(Py_ssize_t) * (d + 2));
        ws.band_next = (Py_ssize_t *)malloc(sizeof(Py_ssize_t) * (d + 2));
        ws.comp_best = (double *)malloc(sizeof(double) * d);
        ws.cover = (double *)malloc(sizeof(double) * d);
        ws.holes = (int32_t *)malloc(sizeof(int32_t) * d);
        ws.pick_q2 = (int32_t *)malloc(sizeof(int32_t) * d);
        ws.need = (uint8_t *)malloc(d);
        ws.amb = (uint8_t *)malloc(d);
        ws.amb_range = (Py_ssize_t *)malloc(sizeof(Py_ssize_t) * 2 * d);
        ws.cap_cuts = d;
        if (!ws.comp_best || !ws.cover || !ws.holes || !ws.pick_q2 || !ws.need || !ws.amb || !ws.amb_range || !ws.band_start || !ws.band_next) {
            ws.cap_cuts = 0;
            return -1;
        }
    }
    return 0;
}

static inline int32_t find_root(int32_t *parent, int32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

static inline void list_add(Forest *f, int32_t r) {
    f->pos[r] = f->n_active;
    f->active[f->n_active++] = r;
}

static inline void list_remove(Forest *f, int32_t r) {
    int32_t i = f->pos[r];
    if (i < 0) return;
    int32_t last = f->active[--f->n_active];
    f->active[i] = last;
    f->pos[last] = i;
    f->pos[r] = -1;
}

/* Merge two distinct roots (union by size); returns the surviving root. */
static inline int32_t merge_roots(Forest *f, int32_t ra, int32_t rb) {
    if (f->reg[ra].size < f->reg[rb].size) { int32_t t = ra; ra = rb; rb = t; }
    Region *A = &f->reg[ra], *B = &f->reg[rb];
    f->parent[rb] = ra;
    if (B->x0 < A->x0) A->x0 = B->x0;
    if (B->y0 < A->y0) A->y0 = B->y0;
    if (B->x1 > A->x1) A->x1 = B->x1;
    if (B->y1 > A->y1) A->y1 = B->y1;
    A->size += B->size;
    A->q2 += B->q2;
    if (B->first < A->first) A->first = B->first;
    list_remove(f, rb);
    if (B->touch && !A->touch) {
        A->touch = 1;
        list_remove(f, ra);
    }
    return ra;
}

/* Join the new pixel pp (raster index p) to its added neighbour q; *root is pp's root so far (-1: none). */
static inline void join(Forest *f, int32_t pp, int32_t p, int32_t q, int32_t x, int32_t y, int32_t *root) {
    if (f->parent[q] == *root) return; /* the common case: q hangs right under pp's root */
    int32_t rq = find_root(f->parent, q);
    if (*root < 0) {
        Region *r = &f->reg[rq];
        f->parent[pp] = rq;
        if (x < r->x0) r->x0 = x;
        if (x > r->x1) r->x1 = x;
        if (y < r->y0) r->y0 = y;
        if (y > r->y1) r->y1 = y;
        if (p < r->first) r->first = p;
        r->size += 1;
        *root = rq;
    } else if (rq != *root) {
        *root = merge_roots(f, *root, rq);
    }
}

/* Make pp a region of its own (it had no added neighbour). */
static inline int32_t region_new(Forest *f, int32_t pp, int32_t p, int32_t x, int32_t y) {
    f->parent[pp] = pp;
    Region *r = &f->reg[pp];
    r->x0 = r->x1 = x;
    r->y0 = r->y1 = y;
    r->size = 1;
    r->q2 = 0;
    r->first = p;
    r->touch = 0;
    list_add(f, pp);
    return pp;
}

/* Best IoU with the GT boxes of the inclusive box, and best share of a GT box it covers. */
static inline double box_scores(const int64_t *gt, Py_ssize_t n_gt, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                                double *cover) {
    double best = 0.0, cov = 0.0;
    int64_t area = (x1 - x0 + 1) * (y1 - y0 + 1);
    for (Py_ssize_t g = 0; g < n_gt; g++) {
        const int64_t *b = gt + 4 * g;
        int64_t iw = (x1 < b[2] ? x1 : b[2]) - (x0 > b[0] ? x0 : b[0]) + 1;
        int64_t ih = (y1 < b[3] ? y1 : b[3]) - (y0 > b[1] ? y0 : b[1]) + 1;
        if (iw < 0) iw = 0;
        if (ih < 0) ih = 0;
        int64_t inter = iw * ih;
        int64_t area_g = (b[2] - b[0] + 1) * (b[3] - b[1] + 1);
        int64_t uni = area + area_g - inter;
        double v = uni > 0 ? (double)inter / (double)uni : 0.0;
        if (v > best) best = v;
        double c = (double)inter / (double)area_g;
        if (c > cov) cov = c;
    }
    if (cover) *cover = cov;
    return best;
}

/* Per 2x2 cell pattern (bit per corner): the Euler contribution times 4 for an 8-connected
 * foreground (Gray's bit quads), and whether one more corner adds half a unit of area (2+ corners). */
static const int8_t EULER4[16] = {0, 1, 1, 0, 1, 0, -2, -1, 1, -2, 0, -1, 0, -1, -1, 0};
static const int8_t GROWS[16] = {0, 0, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1};

static PyObject *box_kernel(PyObject *self, PyObject *args) {
    Py_buffer mapb, cutb, gtb, v2b, boxb, flagb;
    Py_ssize_t H, W;
    if (!PyArg_ParseTuple(args, "y*nny*y*w*w*w*", &mapb, &H, &W, &cutb, &gtb, &v2b, &boxb, &flagb)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t N = H * W, WP = W + 2, NP = (H + 2) * (W + 2), CW = W + 1;
    const Py_ssize_t D = cutb.len / (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t G = gtb.len / (Py_ssize_t)(4 * sizeof(int64_t));
    const uint8_t *lv = (const uint8_t *)mapb.buf;
    const int64_t *cuts = (const int64_t *)cutb.buf;
    const int64_t *gt = (const int64_t *)gtb.buf;
    double *v2 = (double *)v2b.buf;
    int64_t *v1box = (int64_t *)boxb.buf;
    int64_t *flag = (int64_t *)flagb.buf;
    int oom = 0;

    if (H <= 0 || W <= 0 || mapb.len != N || D <= 0 || G <= 0 || v2b.len != D * (Py_ssize_t)sizeof(double) ||
        boxb.len != 4 * D * (Py_ssize_t)sizeof(int64_t) || flagb.len != D * (Py_ssize_t)sizeof(int64_t) ||
        NP >= INT32_MAX - 1 || H > 65535 || W > 65535) {
        PyErr_SetString(PyExc_ValueError, "box_kernel: inconsistent buffer sizes");
        goto done;
    }
    for (Py_ssize_t j = 1; j < D; j++)
        if (cuts[j] <= cuts[j - 1]) {
            PyErr_SetString(PyExc_ValueError, "box_kernel: cuts must be strictly ascending");
            goto done;
        }
    if (workspace_reserve(NP, (H + 1) * CW, D)) {
        PyErr_NoMemory();
        goto done;
    }

    Py_BEGIN_ALLOW_THREADS
    int32_t *order = ws.order;
    uint8_t *cells = ws.cells;
    /* Pixels between two consecutive cuts change sides together, so they are sorted by "band":
     * band(l) = number of cuts below level l (foreground at cut j iff band > j), and in raster
     * order within a band (a counting sort, stable), which keeps the passes local. */
    int32_t band[256];
    for (int l = 0, k = 0; l < 256; l++) {
        while (k < D && cuts[k] < l) k++;
        band[l] = k;
    }
    Py_ssize_t *start = ws.band_start; /* band b occupies order[start[b] .. start[b + 1]) */
    memset(start, 0, sizeof(Py_ssize_t) * (D + 2));
    for (Py_ssize_t p = 0; p < N; p++) start[band[lv[p]] + 1]++;
    for (Py_ssize_t b = 0; b <= D; b++) start[b + 1] += start[b];
    {
        Py_ssize_t *next = ws.band_next;
        memcpy(next, start, sizeof(Py_ssize_t) * (D + 1));
        for (int32_t y = 0, p = 0; y < H; y++)
            for (int32_t x = 0; x < W; x++, p++) order[next[band[lv[p]]]++] = (y << 16) | x;
    }

    /* ---- pass 1: components; foreground at cut c is {level > c} ---- */
    Forest f1 = {ws.parent1, ws.reg1, ws.active1, ws.pos1, 0};
    memset(ws.parent1, 0xff, sizeof(int32_t) * NP);
    memset(cells, 0, (size_t)(H + 1) * CW);
    ws.amb_comps.used = 0;
    int32_t euler4 = 0, w = (int32_t)W, wp = (int32_t)WP;
    for (Py_ssize_t j = D - 1; j >= 0; j--) {
        for (Py_ssize_t idx = start[j + 1]; idx < start[j + 2]; idx++) { /* newly foreground at cut j */
            const int32_t y = order[idx] >> 16, x = order[idx] & 0xffff;
            const int32_t p = y * w + x, pp = (y + 1) * wp + x + 1;
            const int32_t *par = f1.parent;
            int32_t r = -1;
            /* Added pixels that are 8-adjacent are in one set already: W/E need a look only when
             * neither N nor S is added, a diagonal only when neither 4-neighbour beside it is. */
            const int nN = par[pp - wp] >= 0, nS = par[pp + wp] >= 0, nW = par[pp - 1] >= 0, nE = par[pp + 1] >= 0;
            if (nN) join(&f1, pp, p, pp - wp, x, y, &r);
            if (nS) join(&f1, pp, p, pp + wp, x, y, &r);
            if (!nN && !nS) {
                if (nW) join(&f1, pp, p, pp - 1, x, y, &r);
                if (nE) join(&f1, pp, p, pp + 1, x, y, &r);
            }
            if (!nN) {
                if (!nW && par[pp - wp - 1] >= 0) join(&f1, pp, p, pp - wp - 1, x, y, &r);
                if (!nE && par[pp - wp + 1] >= 0) join(&f1, pp, p, pp - wp + 1, x, y, &r);
            }
            if (!nS) {
                if (!nW && par[pp + wp - 1] >= 0) join(&f1, pp, p, pp + wp - 1, x, y, &r);
                if (!nE && par[pp + wp + 1] >= 0) join(&f1, pp, p, pp + wp + 1, x, y, &r);
            }
            if (r < 0) r = region_new(&f1, pp, p, x, y);
            /* the 4 cells with p as a corner (bits: 0 top-left, 1 top-right, 2 bottom-left,
             * 3 bottom-right); their foreground corners all belong to p's component */
            uint8_t *c0 = cells + (Py_ssize_t)y * CW + x, *c1 = c0 + 1, *c2 = c0 + CW, *c3 = c2 + 1;
            const uint8_t o0 = *c0, o1 = *c1, o2 = *c2, o3 = *c3;
            *c0 = o0 | 8;
            *c1 = o1 | 4;
            *c2 = o2 | 2;
            *c3 = o3 | 1;
            f1.reg[r].q2 += GROWS[o0] + GROWS[o1] + GROWS[o2] + GROWS[o3];
            euler4 += EULER4[o0 | 8] - EULER4[o0] + EULER4[o1 | 4] - EULER4[o1] + EULER4[o2 | 2] - EULER4[o2] +
                      EULER4[o3 | 1] - EULER4[o3];
        }
        /* the components at cut j */
        int64_t *box = v1box + 4 * j;
        flag[j] = 0;
        ws.need[j] = ws.amb[j] = 0;
        ws.holes[j] = 0;
        if (f1.n_active == 0) {
            box[0] = box[1] = box[2] = box[3] = 0;
            ws.comp_best[j] = box_scores(gt, G, 0, 0, 0, 0, NULL);
            continue;
        }
        double best = 0.0, cover = 0.0;
        int32_t pick = -1;
        for (int32_t k = 0; k < f1.n_active; k++) {
            const int32_t root = f1.active[k];
            const Region *r = &f1.reg[root];
            const int64_t bx1 = r->x1 + 1 > W - 1 ? W - 1 : r->x1 + 1, by1 = r->y1 + 1 > H - 1 ? H - 1 : r->y1 + 1;
            double cov;
            const double v = box_scores(gt, G, r->x0, r->y0, bx1, by1, &cov);
            if (v > best) best = v;
            if (cov > cover) cover = cov;
            if (pick < 0 || r->q2 > f1.reg[pick].q2 || (r->q2 == f1.reg[pick].q2 && r->first > f1.reg[pick].first))
                pick = root;
        }
        const Region *pr = &f1.reg[pick];
        box[0] = pr->x0;
        box[1] = pr->y0;
        box[2] = pr->x1 + 1 > W - 1 ? W - 1 : pr->x1 + 1;
        box[3] = pr->y1 + 1 > H - 1 ? H - 1 : pr->y1 + 1;
        ws.comp_best[j] = best;
        ws.holes[j] = f1.n_active - euler4 / 4;
        if (ws.holes[j] <= 0) continue;
        /* with holes, the largest contour is certain if its hole-free area beats every other
         * component's polygon area bound (its pixel box); else hole boxes are needed */
        if (f1.n_active > 1) {
            for (int32_t k = 0; k < f1.n_active; k++) {
                const Region *r = &f1.reg[f1.active[k]];
                if (f1.active[k] != pick && 2 * (int64_t)(r->x1 - r->x0) * (r->y1 - r->y0) >= pr->q2) {
                    ws.amb[j] = 1;
                    break;
                }
            }
        }
        if (ws.amb[j]) {
            ws.amb_range[2 * j] = ws.amb_comps.used;
            ws.pick_q2[j] = pr->q2;
            if (buffer_reserve(&ws.amb_comps, 5 * (Py_ssize_t)f1.n_active)) {
                oom = 1;
                ws.amb[j] = 0;
                flag[j] = 1;
            } else {
                for (int32_t k = 0; k < f1.n_active; k++) {
                    if (f1.active[k] == pick) continue;
                    const Region *r = &f1.reg[f1.active[k]];
                    int32_t *rec = ws.amb_comps.data + ws.amb_comps.used;
                    rec[0] = r->x0, rec[1] = r->y0, rec[2] = r->x1, rec[3] = r->y1, rec[4] = r->q2;
                    ws.amb_comps.used += 5;
                }
            }
            ws.amb_range[2 * j + 1] = ws.amb_comps.used;
        }
        /* a hole box lies inside its component's box: it can only help if that covers more of a GT box */
        ws.need[j] = ws.amb[j] || cover > best;
    }

    /* ---- pass 2: holes, only as far as a cut needs them; background at cut c is {level <= c} ---- */
    Py_ssize_t last_needed = -1;
    for (Py_ssize_t j = 0; j < D; j++)
        if (ws.need[j]) last_needed = j;
    for (Py_ssize_t j = 0; j < D; j++) v2[j] = ws.comp_best[j];
    if (last_needed >= 0) {
        Forest f2 = {ws.parent2, ws.reg2, ws.active2, ws.pos2, 0};
        memset(ws.parent2, 0xff, sizeof(int32_t) * NP);
        /* the padding ring is one region, "outside", rooted at 0 */
        Region *out = &f2.reg[0];
        out->x0 = out->y0 = 0;
        out->x1 = out->y1 = 0;
        out->size = INT32_MAX / 2;
        out->q2 = 0;
        out->first = 0;
        out->touch = 1;
        f2.pos[0] = -1;
        for (Py_ssize_t x = 0; x < WP; x++) f2.parent[x] = f2.parent[NP - 1 - x] = 0;
        for (Py_ssize_t y = 0; y < H + 2; y++) f2.parent[y * WP] = f2.parent[y * WP + WP - 1] = 0;
        for (Py_ssize_t j = 0; j <= last_needed; j++) {
            for (Py_ssize_t i2 = start[j]; i2 < start[j + 1]; i2++) { /* newly background at cut j */
                const int32_t y = order[i2] >> 16, x = order[i2] & 0xffff;
                const int32_t p = y * w + x, pp = (y + 1) * wp + x + 1;
                const int32_t *par = f2.parent;
                int32_t r = -1;
                if (par[pp - wp] >= 0) join(&f2, pp, p, pp - wp, x, y, &r);
                if (par[pp - 1] >= 0) join(&f2, pp, p, pp - 1, x, y, &r);
                if (par[pp + 1] >= 0) join(&f2, pp, p, pp + 1, x, y, &r);
                if (par[pp + wp] >= 0) join(&f2, pp, p, pp + wp, x, y, &r);
                if (r < 0) region_new(&f2, pp, p, x, y);
            }
            if (!ws.need[j]) continue;
            double best = 0.0;
            ws.hole_boxes.used = 0;
            if (ws.amb[j] && buffer_reserve(&ws.hole_boxes, 4 * (Py_ssize_t)f2.n_active)) {
                oom = 1;
                ws.amb[j] = 0;
                flag[j] = 1;
            }
            for (int32_t k = 0; k < f2.n_active; k++) {
                const Region *r = &f2.reg[f2.active[k]];
                const int64_t bx1 = r->x1 + 2 > W - 1 ? W - 1 : r->x1 + 2, by1 = r->y1 + 2 > H - 1 ? H - 1 : r->y1 + 2;
                const double v = box_scores(gt, G, r->x0 - 1, r->y0 - 1, bx1, by1, NULL);
                if (v > best) best = v;
                if (ws.amb[j]) {
                    int32_t *hb = ws.hole_boxes.data + ws.hole_boxes.used;
                    hb[0] = r->x0, hb[1] = r->y0, hb[2] = r->x1, hb[3] = r->y1;
                    ws.hole_boxes.used += 4;
                }
            }
            if (best > v2[j]) v2[j] = best;
            if (!ws.amb[j]) continue;
            /* Area(Y) = Q(filled Y) <= Q(Y) + the cells any hole inside Y's box can touch */
            for (Py_ssize_t a = ws.amb_range[2 * j]; a < ws.amb_range[2 * j + 1] && !flag[j]; a += 5) {
                const int32_t *y = ws.amb_comps.data + a;
                int64_t bound = y[4];
                for (Py_ssize_t h = 0; h < ws.hole_boxes.used; h += 4) {
                    const int32_t *hb = ws.hole_boxes.data + h;
                    if (hb[0] > y[0] && hb[2] < y[2] && hb[1] > y[1] && hb[3] < y[3])
                        bound += 2 * (int64_t)(hb[2] - hb[0] + 2) * (hb[3] - hb[1] + 2);
                }
                if (bound >= ws.pick_q2[j]) flag[j] = 1;
            }
        }
    }
    Py_END_ALLOW_THREADS
    (void)oom; /* out of memory for bookkeeping only sends cuts to the caller's exact search */
    result = Py_None;
    Py_INCREF(result);

done:
    PyBuffer_Release(&mapb);
    PyBuffer_Release(&cutb);
    PyBuffer_Release(&gtb);
    PyBuffer_Release(&v2b);
    PyBuffer_Release(&boxb);
    PyBuffer_Release(&flagb);
    return result;
}

static PyMethodDef methods[] = {
    {"box_kernel", box_kernel, METH_VARARGS,
     "box_kernel(levels, H, W, cuts, gt, out_v2, out_v1box, out_flag): boxes at every cut (see the source)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_boxkernel",
                                    "Exact multi-threshold WSOL box extraction (union-find).", -1, methods};

PyMODINIT_FUNC PyInit__boxkernel(void) { return PyModule_Create(&module); }
