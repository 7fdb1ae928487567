/* A program outside the project that uses the installed C API (tests/install/check_install.sh):
 * causal attention over 7 tokens, 2 heads, head_dim 8, against a double-precision reference. */
#include <anchorctx/anchorctx.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { T = 7, H = 2, D = 8 };

static double reference(const float* q, const float* k, const float* v, int t, int h, int d) {
  double scores[T], max = -INFINITY, sum = 0.0, value = 0.0;
  for (int j = 0; j <= t; ++j) {
    double dot = 0.0;
    for (int e = 0; e < D; ++e)
      dot += (double)q[(t * H + h) * D + e] * k[(j * H + h) * D + e];
    scores[j] = dot / sqrt((double)D);
    if (scores[j] > max) max = scores[j];
  }
  for (int j = 0; j <= t; ++j) {
    sum += exp(scores[j] - max);
    value += exp(scores[j] - max) * v[(j * H + h) * D + d];
  }
  return value / sum;
}

int main(void) {
  float q[T * H * D], k[T * H * D], v[T * H * D], out[T * H * D], lse[H * T];
  for (int i = 0; i < T * H * D; ++i) {
    q[i] = (float)sin(0.37 * i);
    k[i] = (float)cos(0.11 * i + 1.0);
    v[i] = (float)sin(0.05 * i * i);
    out[i] = NAN; /* poisoned: an unwritten element shows */
  }
  const int32_t cu_seqlens[2] = {0, T};
  const anchorctx_layout layout = {1, cu_seqlens, NULL, NULL, NULL};
  const anchorctx_attention_params params = {H, H, D, 0.0f, 1};
  char error[256] = "";
  if (anchorctx_attention_forward(&layout, ANCHORCTX_MASK_CAUSAL, ANCHORCTX_F32, &params, q, k, v,
                                  out, lse, error, sizeof error) != ANCHORCTX_OK) {
    fprintf(stderr, "forward failed: %s\n", error);
    return 1;
  }
  double worst = 0.0;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int d = 0; d < D; ++d) {
        const double diff = fabs(out[(t * H + h) * D + d] - reference(q, k, v, t, h, d));
        if (!(diff <= worst)) worst = diff; /* NaN makes worst NaN */
      }
  /* A bad argument is a status and a message, not a crash. */
  const anchorctx_attention_params bad = {H, 3, D, 0.0f, 1};
  const anchorctx_status refused = anchorctx_attention_forward(
      &layout, ANCHORCTX_MASK_CAUSAL, ANCHORCTX_F32, &bad, q, k, v, out, lse, error, sizeof error);
  printf("anchorctx %s: max |out - reference| = %.3g; heads_kv 3 of 2: status %d (%s)\n",
         anchorctx_version(), worst, (int)refused, error);
  return worst <= 1e-5 && refused == ANCHORCTX_INVALID_ARGUMENT && strlen(error) > 0 ? 0 : 1;
}
