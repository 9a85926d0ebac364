/*
 * Exact WSOL box extraction at every threshold of a quantised score map, on runs of pixels.
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
 * The pixels are sorted by level once (counting sort). At each cut, from the highest down, the
 * cut's new pixels are set in a bitmap of the foreground, which is labelled on its runs (maximal
 * horizontal segments; score maps have one to three per row and cut), not on its pixels. Two runs
 * of consecutive rows are 8-adjacent when their column spans overlap or touch diagonally. Per
 * component, from its runs alone:
 *   - its bounding box and first run (components are merged into the smaller run number, so a
 *     root is its first run in raster order);
 *   - 2Q: each pair of adjacent runs sharing L >= 1 columns adds 2(L - 1) for the cells with four
 *     corners, plus one for each end where the runs' spans differ (a cell with three corners);
 *   - its number of holes: 1 - (runs - adjacent run pairs), the Euler number of an 8-connected
 *     set counted on runs (kept as one sum: a joined set's holes are the two sums minus one).
 * Hole boxes are needed only at some cuts; there the background runs (the gaps between the
 * foreground runs) inside the union of the boxes of the components concerned are labelled with
 * 4-adjacency (a shared column); those not connected to that box's border are holes. A cut needs
 * them when
 *   - the multi-contour rule could change: it only asks whether the best IoU reaches each IoU
 *     threshold (delta), and a hole box lies inside its component's box, so its IoU with a GT box
 *     is at most the share of that GT box the component's box covers: holes are searched only when
 *     a component with holes covers enough of a GT box to reach the smallest delta the component
 *     boxes miss;
 *   - or a component with holes might be larger than the one with the largest hole-free area
 *     (rare): its area is bounded with the boxes of the holes inside its box, and where that does
 *     not decide, the areas of the candidates' outer contours are computed exactly (the gaps
 *     between a component's own runs that are not connected to the outside are filled).
 *
 * Outputs per distinct cut j (cuts ascending):
 *   v2[j]     the best IoU of any contour box with any GT box, as far as the deltas tell: exact
 *             where holes were searched or cannot matter, else the best component box's IoU,
 *             which then lies on the same side of every delta as the exact value;
 *   v1box[j]  box of the largest contour (single-contour rule).
 * Boxes follow the reference: (x, y, min(x + w, W - 1), min(y + h, H - 1)); IoU is inclusive.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_CUTS 257

typedef struct {
    int32_t s, e; /* columns s..e (inclusive); the row is known from where the run is stored */
} Run;

typedef struct {
    int32_t x0, y0, x1, y1; /* pixel bounding box (inclusive) */
    int32_t q2;             /* 2Q (foreground); at most 2(H - 1)(W - 1) < 2^31 for sides <= 32767 */
    int32_t holes;          /* foreground: 1 - runs + adjacent run pairs (1 - its Euler number) */
    int32_t touch;          /* background: whether the set touches the outside */
} Set;

typedef struct {
    int32_t x0, y0, x1, y1; /* pixel bounding box */
    int32_t q2, root;       /* 2Q of its pixels (holes not filled), its first run */
    int32_t rival;          /* its box leaves room to be larger than the pick: its area is checked */
    double cover;           /* the largest share of a GT box its box covers */
} Holed;

/* Per-thread workspace, grown on demand and reused. */
typedef struct {
    Py_ssize_t cap_runs, cap_words, cap_pixels;
    int32_t row_max[1 << 15]; /* highest level of each row */
    uint32_t *order; /* foreground candidates by descending level, as bit positions y * 64 * nw + x */
    int32_t row_first[1 << 15], row_last[1 << 15]; /* a component's first run start / last run end per row */
    uint64_t *bits;
    Run *fg, *bg;
    int32_t *fg_row, *bg_row; /* first run of each row (H + 1 entries) */
    int32_t *parent, *comp; /* comp: a foreground run's component, kept while the labels are reused */
    int32_t *roots;         /* the runs that started a set, ascending (the roots are among them) */
    Set *set;
    Run *seg;       /* a component's rows with its holes filled */
    int32_t *seg_row;
    int32_t *holes;   /* hole boxes of the cut being resolved: x0, y0, x1, y1 */
    Holed *holed;     /* components with holes at the cut being resolved */
    /* per distinct cut (at most MAX_CUTS: cuts are clamped to [-1, 255]) */
    int64_t cuts[MAX_CUTS], box[4 * MAX_CUTS];
    double v2[MAX_CUTS];
} Workspace;

static __thread Workspace ws;

static int workspace_reserve(Py_ssize_t H, Py_ssize_t W) {
    const Py_ssize_t words = H * ((W + 63) / 64), runs = H * (W / 2 + 2);
    if (words > ws.cap_words) {
        free(ws.bits);
        ws.bits = (uint64_t *)malloc(sizeof(uint64_t) * words);
        ws.cap_words = ws.bits ? words : 0;
        if (!ws.bits) return -1;
    }
    if (H * W > ws.cap_pixels) {
        free(ws.order);
        ws.order = (uint32_t *)malloc(sizeof(uint32_t) * H * W);
        ws.cap_pixels = ws.order ? H * W : 0;
        if (!ws.order) return -1;
    }
    if (runs > ws.cap_runs || H + 1 > ws.cap_runs) {
        const Py_ssize_t cap = runs > H + 1 ? runs : H + 1;
        free(ws.fg), free(ws.bg), free(ws.fg_row), free(ws.bg_row), free(ws.parent), free(ws.set);
        free(ws.comp), free(ws.seg), free(ws.seg_row), free(ws.roots);
        free(ws.holes), free(ws.holed);
        ws.fg = (Run *)malloc(sizeof(Run) * cap);
        ws.bg = (Run *)malloc(sizeof(Run) * cap);
        ws.fg_row = (int32_t *)malloc(sizeof(int32_t) * (cap + 1));
        ws.bg_row = (int32_t *)malloc(sizeof(int32_t) * (cap + 1));
        ws.parent = (int32_t *)malloc(sizeof(int32_t) * cap);
        ws.set = (Set *)malloc(sizeof(Set) * cap);
        ws.comp = (int32_t *)malloc(sizeof(int32_t) * cap);
        ws.roots = (int32_t *)malloc(sizeof(int32_t) * cap);
        ws.seg = (Run *)malloc(sizeof(Run) * cap);
        ws.seg_row = (int32_t *)malloc(sizeof(int32_t) * (cap + 1));
        ws.holes = (int32_t *)malloc(sizeof(int32_t) * 4 * cap);
        ws.holed = (Holed *)malloc(sizeof(Holed) * cap);
        ws.cap_runs = cap;
        if (!ws.fg || !ws.bg || !ws.fg_row || !ws.bg_row || !ws.parent || !ws.set || !ws.holes || !ws.holed ||
            !ws.comp || !ws.seg || !ws.seg_row || !ws.roots) {
            ws.cap_runs = 0;
            return -1;
        }
    }
    return 0;
}

static inline int32_t find_root(int32_t *parent, int32_t x) {
    const int32_t p = parent[x];
    if (parent[p] == p) return p; /* a root or a root's child: most runs */
    while (parent[x] != x) {      /* path halving */
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/* Join the sets of runs a and b; the smaller run number stays the root. Returns the root. */
static inline int32_t join(int32_t *parent, Set *set, int32_t a, int32_t b) {
    int32_t ra = find_root(parent, a), rb = find_root(parent, b);
    if (ra == rb) return ra;
    if (rb < ra) { int32_t t = ra; ra = rb; rb = t; }
    Set *A = &set[ra], *B = &set[rb];
    parent[rb] = ra;
    A->x0 = B->x0 < A->x0 ? B->x0 : A->x0;
    A->x1 = B->x1 > A->x1 ? B->x1 : A->x1;
    A->y1 = B->y1 > A->y1 ? B->y1 : A->y1; /* y0: a root is the set's first run */
    A->q2 += B->q2;
    A->holes += B->holes - 1; /* the runs and pairs add up */
    A->touch |= B->touch;
    return ra;
}

static inline void set_init(Set *s, const Run *r, int32_t y) {
    s->x0 = r->s, s->x1 = r->e, s->y0 = s->y1 = y;
    s->q2 = 0, s->holes = 0, s->touch = 0;
}

/* Add the run s..e of row y (below the set's rows) to the set's box. */
static inline void set_extend(Set *g, int32_t s, int32_t e, int32_t y) {
    g->x0 = s < g->x0 ? s : g->x0;
    g->x1 = e > g->x1 ? e : g->x1;
    g->y1 = y;
}

/* 2Q gained from two 8-adjacent runs of consecutive rows: sharing L >= 1 columns, 2(L - 1) for
 * the cells with four corners plus one per end where the spans differ (a cell with three). */
static inline int32_t pair_q2(const Run *a, const Run *b) {
    const int32_t l = a->s > b->s ? a->s : b->s, h = a->e < b->e ? a->e : b->e;
    return h >= l ? 2 * (h - l) + (a->s != b->s) + (a->e != b->e) : 0;
}

/* Join the runs of consecutive rows that share a column (4-adjacency; rows row_start[0..rows)),
 * merging their sets (and their "touches the outside" flags). */
static void join_4_adjacent(const Run *runs, const int32_t *row_start, int32_t rows, int32_t *parent, Set *set) {
    for (int32_t y = 1; y < rows; y++) {
        int32_t i = row_start[y - 1], k = row_start[y];
        const int32_t i_end = row_start[y], k_end = row_start[y + 1];
        while (i < i_end && k < k_end) {
            const Run *a = &runs[i], *b = &runs[k];
            if (a->e < b->s) {
                i++;
            } else if (b->e < a->s) {
                k++;
            } else {
                join(parent, set, i, k);
                if (a->e < b->e) i++;
                else k++;
            }
        }
    }
}

/* IoU of the inclusive box with one GT box, and the share of the GT box it covers. */
static inline double box_iou(const int64_t *b, int64_t x0, int64_t y0, int64_t x1, int64_t y1, double *cover) {
    int64_t iw = (x1 < b[2] ? x1 : b[2]) - (x0 > b[0] ? x0 : b[0]) + 1;
    int64_t ih = (y1 < b[3] ? y1 : b[3]) - (y0 > b[1] ? y0 : b[1]) + 1;
    if (iw < 0) iw = 0;
    if (ih < 0) ih = 0;
    const int64_t inter = iw * ih;
    const int64_t area_g = (b[2] - b[0] + 1) * (b[3] - b[1] + 1);
    const int64_t uni = (x1 - x0 + 1) * (y1 - y0 + 1) + area_g - inter;
    *cover = (double)inter / (double)area_g;
    return uni > 0 ? (double)inter / (double)uni : 0.0;
}

/* Best IoU of the box with the GT boxes, and the best share of a GT box it covers. */
static inline double box_scores(const int64_t *gt, Py_ssize_t n_gt, int64_t x0, int64_t y0, int64_t x1, int64_t y1,
                                double *cover) {
    double best = 0.0, cov = 0.0, c;
    for (Py_ssize_t g = 0; g < n_gt; g++) {
        const double v = box_iou(gt + 4 * g, x0, y0, x1, y1, &c);
        best = v > best ? v : best;
        cov = c > cov ? c : cov;
    }
    *cover = cov;
    return best;
}

/* Extract the foreground runs of rows y_lo..y_hi from the bits and label them (8-adjacency) with
 * their sets' statistics; rows outside are empty. The runs that start a set are listed in roots
 * (*n_roots of them). Returns the number of runs. */
static int32_t label_foreground(const uint64_t *bits, int32_t H, int32_t W, int32_t y_lo, int32_t y_hi, Run *runs,
                                int32_t *row_start, int32_t *parent, Set *set, int32_t *roots, int32_t *n_roots) {
    int32_t nr = 0;
    const int32_t nw = (W + 63) / 64;
    int32_t n = 0;
    for (int32_t y = 0; y < y_lo; y++) row_start[y] = 0;
    for (int32_t y = y_lo; y <= y_hi; y++) {
        row_start[y] = n;
        const uint64_t *row = bits + (Py_ssize_t)y * nw;
        uint64_t carry = 0; /* the pixel left of the word, as bit 0 */
        int inside = 0;
        for (int32_t k = 0; k < nw; k++) {
            const uint64_t v = row[k];
            uint64_t t = v ^ ((v << 1) | carry); /* bit i: pixel i differs from pixel i - 1 */
            carry = v >> 63;
            while (t) {
                const int32_t col = k * 64 + __builtin_ctzll(t);
                t &= t - 1;
                if (!inside) runs[n].s = col;
                else runs[n++].e = col - 1;
                inside = !inside;
            }
        }
        if (inside) runs[n++].e = W - 1;
        /* each run joins the runs of the row above it touches (their column spans overlap or meet
         * diagonally) or starts a set of its own */
        const int32_t hi = n, prev_hi = row_start[y];
        int32_t i = y > y_lo ? row_start[y - 1] : prev_hi;
        for (int32_t k = row_start[y]; k < hi; k++) {
            const Run *b = &runs[k];
            const int32_t reach = b->e + 1;
            while (i < prev_hi && runs[i].e + 1 < b->s) i++;
            if (i < prev_hi && runs[i].s <= reach) {
                int32_t r = find_root(parent, i), q2 = pair_q2(&runs[i], b), pairs = 1;
                for (int32_t ii = i + 1; __builtin_expect(ii < prev_hi && runs[ii].s <= reach, 0); ii++) {
                    const int32_t ra = find_root(parent, ii);
                    if (ra != r) r = join(parent, set, r, ra);
                    q2 += pair_q2(&runs[ii], b);
                    pairs++;
                }
                Set *g = &set[r];
                parent[k] = r;
                set_extend(g, b->s, b->e, y);
                g->q2 += q2;
                g->holes += pairs - 1;
            } else {
                parent[k] = k;
                roots[nr++] = k;
                set_init(&set[k], b, y);
            }
        }
    }
    for (int32_t y = y_hi + 1; y <= H; y++) row_start[y] = n;
    *n_roots = nr;
    return n;
}

/* The background runs (gaps between foreground runs) inside the box rx0..rx1 x ry0..ry1, labelled
 * with 4-adjacency; set.touch holds whether the set touches the box's border. A set that does not is
 * a hole (enclosed by foreground), and every hole of a component inside the box is one. bg_row is
 * indexed from ry0. Returns the number of background runs. */
static int32_t label_background(const Run *fg, const int32_t *fg_row, int32_t rx0, int32_t ry0, int32_t rx1,
                                int32_t ry1, Run *bg, int32_t *bg_row, int32_t *parent, Set *set) {
    int32_t n = 0;
    for (int32_t y = ry0; y <= ry1; y++) {
        const int32_t prev_hi = n;
        int32_t p = y > ry0 ? bg_row[y - 1 - ry0] : prev_hi; /* runs of the row above: p .. prev_hi */
        bg_row[y - ry0] = n;
        int32_t x = rx0;
        for (int32_t i = fg_row[y]; i <= fg_row[y + 1] && x <= rx1; i++) {
            const int32_t end = i < fg_row[y + 1] && fg[i].s - 1 < rx1 ? fg[i].s - 1 : rx1;
            if (end >= x) { /* a gap: it joins the gaps of the row above sharing a column */
                Run *b = &bg[n];
                b->s = x, b->e = end;
                const int touch = x == rx0 || end == rx1 || y == ry0 || y == ry1;
                while (p < prev_hi && bg[p].e < x) p++;
                if (p < prev_hi && bg[p].s <= end) {
                    int32_t r = find_root(parent, p);
                    for (int32_t q = p + 1; q < prev_hi && bg[q].s <= end; q++) {
                        const int32_t rq = find_root(parent, q);
                        if (rq != r) r = join(parent, set, r, rq);
                    }
                    parent[n] = r;
                    set_extend(&set[r], x, end, y);
                    set[r].touch |= touch;
                } else {
                    parent[n] = n;
                    set_init(&set[n], b, y);
                    set[n].touch = touch;
                }
                n++;
            }
            if (i < fg_row[y + 1] && fg[i].e + 1 > x) x = fg[i].e + 1;
        }
    }
    bg_row[ry1 - ry0 + 1] = n;
    return n;
}

/* Twice the area of the outer contour of component c (rows y0..y1): Q of c with every region it
 * encloses filled. Only c is foreground here: the gaps between c's runs in a row are the
 * background that may be enclosed; a gap is outside when it is 4-connected (through gaps of the
 * rows above and below) to the first or last row, or to the part of a neighbouring row left of c's
 * first run or right of its last one. */
static int64_t filled_q2(const Run *fg, const int32_t *fg_row, const int32_t *comp, int32_t c, int32_t y0, int32_t y1,
                         Run *gap, int32_t *gap_row, int32_t *parent, Set *set, Run *seg, int32_t *seg_row) {
    int32_t *first = ws.row_first, *last = ws.row_last;
    int32_t n = 0;
    for (int32_t y = y0; y <= y1; y++) {
        gap_row[y - y0] = n;
        first[y] = -1;
        for (int32_t i = fg_row[y]; i < fg_row[y + 1]; i++) {
            if (comp[i] != c) continue;
            if (first[y] < 0) {
                first[y] = fg[i].s;
            } else {
                gap[n].s = last[y] + 1, gap[n].e = fg[i].s - 1;
                parent[n] = n;
                set_init(&set[n], &gap[n], y);
                set[n].touch = y == y0 || y == y1; /* touches the outside */
                n++;
            }
            last[y] = fg[i].e;
        }
    }
    gap_row[y1 - y0 + 1] = n;
    for (int32_t y = y0; y <= y1; y++)
        for (int32_t g = gap_row[y - y0]; g < gap_row[y - y0 + 1]; g++) /* open to a neighbour row's outer part */
            for (int32_t d = -1; d <= 1; d += 2)
                if (y + d >= y0 && y + d <= y1 && (gap[g].s < first[y + d] || gap[g].e > last[y + d])) set[g].touch = 1;
    join_4_adjacent(gap, gap_row, y1 - y0 + 1, parent, set);
    /* the filled rows: c's runs joined across enclosed gaps */
    int32_t m = 0;
    for (int32_t y = y0; y <= y1; y++) {
        seg_row[y - y0] = m;
        seg[m].s = first[y];
        for (int32_t g = gap_row[y - y0]; g < gap_row[y - y0 + 1]; g++)
            if (set[find_root(parent, g)].touch) { /* an outside gap ends a segment */
                seg[m].e = gap[g].s - 1;
                seg[++m].s = gap[g].e + 1;
            }
        seg[m++].e = last[y];
    }
    seg_row[y1 - y0 + 1] = m;
    int64_t q2 = 0;
    for (int32_t y = y0 + 1; y <= y1; y++) { /* 2Q from the adjacent segment pairs, as for runs */
        int32_t a = seg_row[y - 1 - y0], b = seg_row[y - y0];
        const int32_t a_end = seg_row[y - y0], b_end = seg_row[y - y0 + 1];
        while (a < a_end && b < b_end) {
            const Run *p = &seg[a], *q = &seg[b];
            if (p->e + 1 < q->s) {
                a++;
            } else if (q->e + 1 < p->s) {
                b++;
            } else {
                q2 += pair_q2(p, q);
                if (p->e < q->e) a++;
                else b++;
            }
        }
    }
    return q2;
}

/* The boxes at the D strictly ascending cuts (see the top of the file). */
static void boxes_at_cuts(const uint8_t *lv, Py_ssize_t H, Py_ssize_t W, const int64_t *cuts, Py_ssize_t D,
                          const int64_t *gt, Py_ssize_t G, const double *deltas, Py_ssize_t ND, double *v2,
                          int64_t *v1box) {
    const int32_t h = (int32_t)H, w = (int32_t)W, nw = (w + 63) / 64;
    /* pixels above each level, and the highest level of each row; four histograms (one per column
     * modulo 4) keep the increments of neighbouring pixels independent */
    int32_t hist[4][256];
    Py_ssize_t above[257]; /* above[l + 1]: pixels with level > l, for l in [-1, 255] */
    memset(hist, 0, sizeof(hist));
    for (int32_t y = 0; y < h; y++) {
        const uint8_t *row = lv + (Py_ssize_t)y * w;
        int32_t x = 0, m = 0;
        for (; x + 4 <= w; x += 4)
            hist[0][row[x]]++, hist[1][row[x + 1]]++, hist[2][row[x + 2]]++, hist[3][row[x + 3]]++;
        for (; x < w; x++) hist[x & 3][row[x]]++;
        for (x = 0; x < w; x++) m = row[x] > m ? row[x] : m;
        ws.row_max[y] = m;
    }
    above[256] = 0;
    for (int l = 255; l >= 0; l--) above[l] = above[l + 1] + hist[0][l] + hist[1][l] + hist[2][l] + hist[3][l];
    /* the pixels that can be foreground (level > the lowest cut), sorted by descending level:
     * those of level l at order[above[l + 1] .. above[l]), in four parts (columns modulo 4); the
     * other pixels are written to their own levels' slots, never read, without a branch */
    const int32_t lowest = (int32_t)cuts[0];
    Py_ssize_t next[4][256];
    for (int l = 0; l < 256; l++) {
        next[0][l] = above[l + 1];
        for (int q = 1; q < 4; q++) next[q][l] = next[q - 1][l] + hist[q - 1][l];
    }
    for (int32_t y = 0; y < h; y++) {
        if (ws.row_max[y] <= lowest) continue;
        const uint8_t *row = lv + (Py_ssize_t)y * w;
        const uint32_t base = (uint32_t)y * 64u * (uint32_t)nw;
        int32_t x = 0;
        for (; x + 4 <= w; x += 4)
            for (int q = 0; q < 4; q++) {
                const uint8_t l = row[x + q];
                ws.order[next[q][l]] = base + (uint32_t)(x + q);
                next[q][l] += l > lowest;
            }
        for (; x < w; x++) {
            const uint8_t l = row[x];
            ws.order[next[x & 3][l]] = base + (uint32_t)x;
            next[x & 3][l] += l > lowest;
        }
    }
    memset(ws.bits, 0, sizeof(uint64_t) * (size_t)h * (size_t)nw);
    Py_ssize_t added = 0; /* order[0 .. added) are set in the bits */
    Run *fg = ws.fg;
    Set *set = ws.set;
    int32_t *parent = ws.parent;
    for (Py_ssize_t j = D - 1; j >= 0; j--) {
        int64_t *box = v1box + 4 * j;
        const int32_t cut = (int32_t)cuts[j];
        if (j < D - 1 && above[cut + 1] == above[cuts[j + 1] + 1]) { /* nothing new at this cut */
            memcpy(box, box + 4, 4 * sizeof(int64_t));
            v2[j] = v2[j + 1];
            continue;
        }
        int32_t y_lo = 0, y_hi = h - 1; /* rows holding foreground */
        while (y_lo < h && ws.row_max[y_lo] <= cut) y_lo++;
        while (y_hi >= y_lo && ws.row_max[y_hi] <= cut) y_hi--;
        /* add the pixels of the levels this cut lets in */
        for (const Py_ssize_t end = above[cut + 1]; added < end; added++) {
            const uint32_t q = ws.order[added];
            ws.bits[q >> 6] |= (uint64_t)1 << (q & 63);
        }
        int32_t n_roots;
        const int32_t n_fg = label_foreground(ws.bits, h, w, y_lo, y_hi, fg, ws.fg_row, parent, set, ws.roots, &n_roots);
        if (n_fg == 0) {
            double cov;
            box[0] = box[1] = box[2] = box[3] = 0;
            v2[j] = box_scores(gt, G, 0, 0, 0, 0, &cov);
            continue;
        }
        double best = 0.0, holed_cover = 0.0, cov;
        int32_t pick = -1, n_holed = 0;
        for (int32_t a = 0; a < n_roots; a++) {
            const int32_t i = ws.roots[a];
            if (parent[i] != i) continue;
            const Set *r = &set[i];
            const int64_t bx1 = r->x1 + 1 > w - 1 ? w - 1 : r->x1 + 1, by1 = r->y1 + 1 > h - 1 ? h - 1 : r->y1 + 1;
            const double v = box_scores(gt, G, r->x0, r->y0, bx1, by1, &cov);
            best = v > best ? v : best;
            if (r->holes > 0) {
                Holed *c = &ws.holed[n_holed++];
                c->x0 = r->x0, c->y0 = r->y0, c->x1 = r->x1, c->y1 = r->y1, c->cover = cov;
                c->q2 = r->q2, c->root = i;
                holed_cover = cov > holed_cover ? cov : holed_cover;
            }
            if (pick < 0 || r->q2 >= set[pick].q2) pick = i; /* equal areas: the later first pixel */
        }
        const Set *pr = &set[pick];
        /* the labels are reused for the background below */
        const int32_t pick_q2 = pr->q2, pick_holed = pr->holes > 0, pick_y0 = pr->y0, pick_y1 = pr->y1;
        box[0] = pr->x0;
        box[1] = pr->y0;
        box[2] = pr->x1 + 1 > w - 1 ? w - 1 : pr->x1 + 1;
        box[3] = pr->y1 + 1 > h - 1 ? h - 1 : pr->y1 + 1;
        v2[j] = best;
        /* another component with holes may be larger than its hole-free area says: certain only if
         * even its pixel box (a bound of its contour's area) stays below the pick's area */
        int32_t n_rivals = 0;
        for (int32_t a = 0; a < n_holed; a++) {
            Holed *r = &ws.holed[a];
            r->rival = r->root != pick && 2 * (int64_t)(r->x1 - r->x0) * (r->y1 - r->y0) >= pick_q2;
            n_rivals += r->rival;
        }
        Py_ssize_t k = 0;
        while (k < ND && best >= deltas[k]) k++;
        const int holes_matter = k < ND && holed_cover >= deltas[k];
        if (!n_rivals && !holes_matter) continue;

        if (n_rivals) /* the components of the runs, for exact areas below */
            for (int32_t i = 0; i < n_fg; i++) ws.comp[i] = find_root(parent, i);
        /* the holes of the components that matter, found inside the union of their boxes */
        int32_t rx0 = w, ry0 = h, rx1 = -1, ry1 = -1;
        for (int32_t a = 0; a < n_holed; a++) {
            const Holed *c = &ws.holed[a];
            if (!c->rival && !(holes_matter && c->cover >= deltas[k])) continue;
            rx0 = c->x0 < rx0 ? c->x0 : rx0, ry0 = c->y0 < ry0 ? c->y0 : ry0;
            rx1 = c->x1 > rx1 ? c->x1 : rx1, ry1 = c->y1 > ry1 ? c->y1 : ry1;
        }
        const int32_t n_bg = label_background(fg, ws.fg_row, rx0, ry0, rx1, ry1, ws.bg, ws.bg_row, parent, set);
        int32_t n_holes = 0;
        for (int32_t i = 0; i < n_bg; i++) {
            const Set *r = &set[i];
            if (parent[i] != i || r->touch) continue; /* not a root, or touching the box's border */
            const int64_t bx1 = r->x1 + 2 > w - 1 ? w - 1 : r->x1 + 2, by1 = r->y1 + 2 > h - 1 ? h - 1 : r->y1 + 2;
            const double v = box_scores(gt, G, r->x0 - 1, r->y0 - 1, bx1, by1, &cov);
            v2[j] = v > v2[j] ? v : v2[j];
            int32_t *hb = ws.holes + 4 * n_holes++;
            hb[0] = r->x0, hb[1] = r->y0, hb[2] = r->x1, hb[3] = r->y1;
        }
        /* Area(Y) = Q(filled Y) <= Q(Y) + the cells any hole inside Y's box can touch; components
         * this bound cannot rule out get their exact area, and so does the pick */
        int64_t best_q2 = -1;
        int32_t best_root = pick;
        for (int32_t a = 0; a < n_holed; a++) {
            const Holed *y = &ws.holed[a];
            if (!y->rival) continue;
            int64_t bound = y->q2;
            for (int32_t b = 0; b < n_holes; b++) {
                const int32_t *hb = ws.holes + 4 * b;
                if (hb[0] > y->x0 && hb[2] < y->x1 && hb[1] > y->y0 && hb[3] < y->y1)
                    bound += 2 * (int64_t)(hb[2] - hb[0] + 2) * (hb[3] - hb[1] + 2);
            }
            if (bound < pick_q2) continue;
            if (best_q2 < 0)
                best_q2 = pick_holed ? filled_q2(fg, ws.fg_row, ws.comp, pick, pick_y0, pick_y1, ws.bg, ws.bg_row,
                                                 parent, set, ws.seg, ws.seg_row)
                                     : pick_q2;
            const int64_t area = filled_q2(fg, ws.fg_row, ws.comp, y->root, y->y0, y->y1, ws.bg, ws.bg_row, parent,
                                           set, ws.seg, ws.seg_row);
            if (area > best_q2 || (area == best_q2 && y->root > best_root)) { /* equal areas: the later first pixel */
                best_q2 = area;
                best_root = y->root;
                box[0] = y->x0;
                box[1] = y->y0;
                box[2] = y->x1 + 1 > w - 1 ? w - 1 : y->x1 + 1;
                box[3] = y->y1 + 1 > h - 1 ? h - 1 : y->y1 + 1;
            }
        }
    }
}

static PyObject *box_kernel(PyObject *self, PyObject *args) {
    Py_buffer mapb, cutb, gtb, deltab, v2b, boxb;
    Py_ssize_t H, W;
    if (!PyArg_ParseTuple(args, "y*nny*y*y*w*w*", &mapb, &H, &W, &cutb, &gtb, &deltab, &v2b, &boxb))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t T = cutb.len / (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t G = gtb.len / (Py_ssize_t)(4 * sizeof(int64_t));
    const Py_ssize_t ND = deltab.len / (Py_ssize_t)sizeof(double);
    const int64_t *cuts = (const int64_t *)cutb.buf;
    const double *deltas = (const double *)deltab.buf;

    if (H <= 0 || W <= 0 || mapb.len != H * W || T <= 0 || G <= 0 || ND <= 0 ||
        v2b.len != T * (Py_ssize_t)sizeof(double) || boxb.len != 4 * T * (Py_ssize_t)sizeof(int64_t) ||
        H > 32767 || W > 32767 || H * W > ((Py_ssize_t)1 << 26)) {
        PyErr_SetString(PyExc_ValueError,
                        "box_kernel: inconsistent buffer sizes (or a side over 32767, or over 2^26 pixels)");
        goto done;
    }
    for (Py_ssize_t t = 1; t < T; t++)
        if (cuts[t] < cuts[t - 1]) {
            PyErr_SetString(PyExc_ValueError, "box_kernel: cuts must be non-decreasing");
            goto done;
        }
    for (Py_ssize_t k = 1; k < ND; k++)
        if (!(deltas[k] > deltas[k - 1])) {
            PyErr_SetString(PyExc_ValueError, "box_kernel: deltas must be strictly ascending");
            goto done;
        }
    if (workspace_reserve(H, W)) {
        PyErr_NoMemory();
        goto done;
    }

    Py_BEGIN_ALLOW_THREADS
    /* distinct cuts, clamped to [-1, 255] (every pixel is above -1, none above 255) */
    Py_ssize_t D = 0;
    for (Py_ssize_t t = 0; t < T; t++) {
        const int64_t c = cuts[t] < -1 ? -1 : (cuts[t] > 255 ? 255 : cuts[t]);
        if (D == 0 || ws.cuts[D - 1] != c) ws.cuts[D++] = c;
    }
    boxes_at_cuts((const uint8_t *)mapb.buf, H, W, ws.cuts, D, (const int64_t *)gtb.buf, G, deltas, ND, ws.v2,
                  ws.box);
    double *v2 = (double *)v2b.buf;
    int64_t *box = (int64_t *)boxb.buf;
    for (Py_ssize_t t = 0, j = 0; t < T; t++) {
        const int64_t c = cuts[t] < -1 ? -1 : (cuts[t] > 255 ? 255 : cuts[t]);
        while (ws.cuts[j] != c) j++;
        v2[t] = ws.v2[j];
        memcpy(box + 4 * t, ws.box + 4 * j, 4 * sizeof(int64_t));
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);

done:
    PyBuffer_Release(&mapb);
    PyBuffer_Release(&cutb);
    PyBuffer_Release(&gtb);
    PyBuffer_Release(&deltab);
    PyBuffer_Release(&v2b);
    PyBuffer_Release(&boxb);
    return result;
}

/* IoU of each single box with its best GT box, and the error kind of the box (see box_metrics.py:
 * 0 MIns: IoG > 0.3 with two GT boxes or more; 1 LPE: IoP > 0.5; 2 LME: IoG > 0.7; 3 other). */
static PyObject *single_box_stats(PyObject *self, PyObject *args) {
    Py_buffer boxb, gtb, ioub, kindb;
    if (!PyArg_ParseTuple(args, "y*y*w*w*", &boxb, &gtb, &ioub, &kindb)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t T = boxb.len / (Py_ssize_t)(4 * sizeof(int64_t)), G = gtb.len / (Py_ssize_t)(4 * sizeof(int64_t));
    if (boxb.len != T * 4 * (Py_ssize_t)sizeof(int64_t) || gtb.len != G * 4 * (Py_ssize_t)sizeof(int64_t) || G <= 0 ||
        ioub.len != T * (Py_ssize_t)sizeof(double) || kindb.len != T * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "single_box_stats: inconsistent buffer sizes");
        goto done;
    }
    const int64_t *box = (const int64_t *)boxb.buf, *gt = (const int64_t *)gtb.buf;
    double *iou = (double *)ioub.buf;
    int64_t *kind = (int64_t *)kindb.buf;
    for (Py_ssize_t t = 0; t < T; t++) {
        const int64_t *b = box + 4 * t;
        const int64_t area_p = (b[2] - b[0] + 1) * (b[3] - b[1] + 1);
        double best = 0.0, max_iog = 0.0, max_iop = 0.0;
        int over_03 = 0;
        for (Py_ssize_t g = 0; g < G; g++) {
            const int64_t *q = gt + 4 * g;
            int64_t iw = (b[2] < q[2] ? b[2] : q[2]) - (b[0] > q[0] ? b[0] : q[0]) + 1;
            int64_t ih = (b[3] < q[3] ? b[3] : q[3]) - (b[1] > q[1] ? b[1] : q[1]) + 1;
            iw = iw < 0 ? 0 : iw, ih = ih < 0 ? 0 : ih;
            const int64_t inter = iw * ih, area_g = (q[2] - q[0] + 1) * (q[3] - q[1] + 1);
            const int64_t uni = area_p + area_g - inter;
            const double v = uni > 0 ? (double)inter / (double)uni : 0.0;
            const double iog = (double)inter / (double)area_g, iop = (double)inter / (double)area_p;
            best = v > best ? v : best;
            max_iog = g == 0 || iog > max_iog || iog != iog ? iog : max_iog; /* a NaN stays, as in np.max */
            max_iop = g == 0 || iop > max_iop || iop != iop ? iop : max_iop;
            over_03 += iog > 0.3;
        }
        iou[t] = best;
        int64_t k = 3;
        if (max_iog > 0.7) k = 2;
        if (max_iop > 0.5) k = 1;
        if (G > 1 && over_03 >= 2) k = 0;
        kind[t] = k;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&boxb);
    PyBuffer_Release(&gtb);
    PyBuffer_Release(&ioub);
    PyBuffer_Release(&kindb);
    return result;
}

/* floor(255 * s) as uint8 in the map's own precision (float32 or float64, as numpy's s * 255), in
 * the same pass as the map's minimum and maximum (NaN if the map holds one); values outside [0, 1]
 * quantise to 0 or 255 (such maps are refused by the caller). */
/* The scalar loop (and the tail of the SSE2 ones) from element i0. */
#define QUANTIZE_TAIL(T, SCALE)                                                          \
    for (Py_ssize_t i = i0; i < n; i++) {                                                \
        const T v = p[i];                                                                \
        nan |= v != v;                                                                   \
        lo_ = v < lo_ ? v : lo_;                                                         \
        hi_ = v > hi_ ? v : hi_;                                                         \
        T x = v * SCALE; /* kept in [0, 255] (NaN: 0) so that the cast is defined */     \
        x = x >= (T)0 ? x : (T)0;                                                        \
        x = x <= (T)255 ? x : (T)255;                                                    \
        out[i] = (uint8_t)(int32_t)x;                                                    \
    }

static void quantize_f64(const double *p, Py_ssize_t n, uint8_t *out, double *lo, double *hi, int *has_nan) {
    double lo_ = p[0], hi_ = p[0];
    int nan = 0;
    Py_ssize_t i0 = 0;
#ifdef __SSE2__
    __m128d vlo = _mm_set1_pd(p[0]), vhi = vlo, vnan = _mm_setzero_pd();
    const __m128d zero = _mm_setzero_pd(), top = _mm_set1_pd(255.0);
    for (; i0 + 8 <= n; i0 += 8) {
        __m128d v[4];
        __m128i q[4];
        for (int k = 0; k < 4; k++) {
            v[k] = _mm_loadu_pd(p + i0 + 2 * k);
            vnan = _mm_or_pd(vnan, _mm_cmpunord_pd(v[k], v[k]));
            vlo = _mm_min_pd(vlo, v[k]);
            vhi = _mm_max_pd(vhi, v[k]);
            /* max/min give their second operand on NaN: a NaN product becomes 0 */
            q[k] = _mm_cvttpd_epi32(_mm_min_pd(_mm_max_pd(_mm_mul_pd(v[k], top), zero), top));
        }
        const __m128i a = _mm_unpacklo_epi64(q[0], q[1]), b = _mm_unpacklo_epi64(q[2], q[3]);
        const __m128i w = _mm_packs_epi32(a, b);
        _mm_storel_epi64((__m128i *)(out + i0), _mm_packus_epi16(w, w));
    }
    double l[2], h[2];
    _mm_storeu_pd(l, vlo), _mm_storeu_pd(h, vhi);
    lo_ = l[0] < l[1] ? l[0] : l[1], hi_ = h[0] > h[1] ? h[0] : h[1];
    nan = _mm_movemask_pd(vnan) != 0;
#endif
    QUANTIZE_TAIL(double, 255.0)
    *lo = lo_, *hi = hi_, *has_nan = nan;
}

static void quantize_f32(const float *p, Py_ssize_t n, uint8_t *out, double *lo, double *hi, int *has_nan) {
    float lo_ = p[0], hi_ = p[0];
    int nan = 0;
    Py_ssize_t i0 = 0;
#ifdef __SSE2__
    __m128 vlo = _mm_set1_ps(p[0]), vhi = vlo, vnan = _mm_setzero_ps();
    const __m128 zero = _mm_setzero_ps(), top = _mm_set1_ps(255.0f);
    for (; i0 + 16 <= n; i0 += 16) {
        __m128i q[4];
        for (int k = 0; k < 4; k++) {
            const __m128 v = _mm_loadu_ps(p + i0 + 4 * k);
            vnan = _mm_or_ps(vnan, _mm_cmpunord_ps(v, v));
            vlo = _mm_min_ps(vlo, v);
            vhi = _mm_max_ps(vhi, v);
            q[k] = _mm_cvttps_epi32(_mm_min_ps(_mm_max_ps(_mm_mul_ps(v, top), zero), top));
        }
        _mm_storeu_si128((__m128i *)(out + i0),
                         _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3])));
    }
    float l[4], h[4];
    _mm_storeu_ps(l, vlo), _mm_storeu_ps(h, vhi);
    for (int k = 0; k < 4; k++) lo_ = l[k] < lo_ ? l[k] : lo_, hi_ = h[k] > hi_ ? h[k] : hi_;
    nan = _mm_movemask_ps(vnan) != 0;
#endif
    QUANTIZE_TAIL(float, 255.0f)
    *lo = (double)lo_, *hi = (double)hi_, *has_nan = nan;
}

static PyObject *quantize(PyObject *self, PyObject *args) {
    Py_buffer srcb, outb;
    int is_f32;
    if (!PyArg_ParseTuple(args, "y*pw*", &srcb, &is_f32, &outb)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = outb.len;
    if (n <= 0 || srcb.len != n * (Py_ssize_t)(is_f32 ? sizeof(float) : sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "quantize: inconsistent buffer sizes");
        goto done;
    }
    uint8_t *out = (uint8_t *)outb.buf;
    double lo, hi;
    int nan = 0;
    if (is_f32) quantize_f32((const float *)srcb.buf, n, out, &lo, &hi, &nan);
    else quantize_f64((const double *)srcb.buf, n, out, &lo, &hi, &nan);
    if (nan) lo = hi = Py_NAN;
    result = Py_BuildValue("dd", lo, hi);
done:
    PyBuffer_Release(&srcb);
    PyBuffer_Release(&outb);
    return result;
}

static PyMethodDef methods[] = {
    {"box_kernel", box_kernel, METH_VARARGS,
     "box_kernel(levels, H, W, cuts, gt, deltas, out_v2, out_v1box): boxes at every cut (see the source)."},
    {"single_box_stats", single_box_stats, METH_VARARGS,
     "single_box_stats(boxes, gt, out_iou, out_kind): best IoU and error kind of each box."},
    {"quantize", quantize, METH_VARARGS,
     "quantize(map, is_float32, out_u8) -> (min, max): floor(255 * s) and the extremes, one pass."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_boxkernel",
                                    "Exact multi-threshold WSOL box extraction (runs and union-find).", -1, methods};

PyMODINIT_FUNC PyInit__boxkernel(void) { return PyModule_Create(&module); }
