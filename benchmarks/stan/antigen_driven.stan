// ckmodel's antigen_driven population model (5-state ODE), written by hand for the fit
// benchmark (benchmarks/bench_fit.py). Same priors, hierarchy and likelihood as
// ckmodel.population.build_model(..., PopulationOptions(method="ode")); the ODE is solved with
// Stan's adaptive ode_rk45 instead of ckmodel's fixed-step RK4, so log densities agree only to
// the RK4 step error.
//   parameter p of subject i: log theta_ip = mu_p + omega_p z_ip (p with IIV), = mu_p otherwise
//   mu_p ~ Normal(prior_mu_p, prior_sd_p), omega ~ HalfNormal(iiv_sd), z ~ N(0, 1)
//   states E, M, X (CAR-T), lL = log L (log marrow blasts, starts at log BM_BLAST_PCT), N
//   (normal myeloid, starts at 1); proliferation kp = r_exp + d_e + k_em + k_ex (derived)
//   outputs PB_QPCR = E + M + X, BM_QPCR = r_bm (E + M + X), BM_BLAST = exp(lL); log-normal residuals
//   with one SD per analyte; BLQ records: log P(y < LLOQ) (M3).
// Parameter order (P = 17): f0 r_exp L50 ag_n Emax d_e k_em k_me k_ex d_m d_x g k_kill E50 q_n k_n r_bm
functions {
  vector rhs(real t, vector y, vector th) {
    real E = y[1];
    real M = y[2];
    real X = y[3];
    real L = exp(y[4]);
    real Nn = y[5];
    real kp = th[2] + th[6] + th[7] + th[9];
    real A = L / th[3] + th[4] * Nn;
    real f = A / (1 + A);
    real kill = th[13] * E / (E + th[14]);
    vector[5] dy;
    dy[1] = kp * f * E / (1 + E / th[5]) - (th[7] + th[9] * f + th[6]) * E + th[8] * f * M;
    dy[2] = th[7] * E - th[8] * f * M - th[10] * M;
    dy[3] = th[9] * f * E - th[11] * X;
    dy[4] = th[12] * (1 - L / 100) - kill;
    dy[5] = th[16] * (1 - Nn) - th[15] * kill * Nn;
    return dy;
  }
}
data {
  int<lower=1> N_subj;
  int<lower=0> N_obs;
  int<lower=1> A;                          // analytes fitted
  array[N_subj] int<lower=1> o_start;      // records sorted by subject: first record of i
  array[N_subj] int<lower=0> o_n;          // and its number of records
  array[N_obs] int<lower=1, upper=A> ana;  // analyte of each record (sigma index)
  array[N_obs] int<lower=1, upper=3> out;  // 1 PB_QPCR, 2 BM_QPCR, 3 BM_BLAST
  vector<lower=0>[N_obs] value;            // observed value, or the LLOQ for BLQ records
  int<lower=0, upper=N_obs> N_blq;
  array[N_obs - N_blq] int<lower=1, upper=N_obs> idx_obs;
  array[N_blq] int<lower=1, upper=N_obs> idx_blq;
  // per-subject solve times (strictly after t0), flattened; tpos[n] = row of record n in the
  // solution (0: the record is at t0)
  real t0;
  int<lower=0> T;
  vector[T] ts;
  array[N_subj] int<lower=0> t_start;      // first row of subject i in ts (1-based)
  array[N_subj] int<lower=0> n_t;
  array[N_obs] int<lower=0, upper=T> tpos;
  vector<lower=0>[N_subj] amt;
  vector<lower=0>[N_subj] blast0;          // BM_BLAST_PCT
  int<lower=1> P;
  int<lower=0> K;
  array[K] int<lower=1, upper=P> iiv_idx;
  vector[P] prior_mu;
  vector<lower=0>[P] prior_sd;
  vector<lower=0>[K] iiv_sd;
  vector<lower=0>[A] sigma_sd;
  real<lower=0> rtol;
  real<lower=0> atol;
  int<lower=1> max_steps;
}
parameters {
  vector[P] mu;
  vector<lower=0>[K] omega;
  matrix[N_subj, K] z;
  vector<lower=0>[A] sigma;
}
model {
  vector[N_obs] pred;
  for (i in 1:N_subj) {
    vector[P] lth = mu;
    for (k in 1:K) {
      lth[iiv_idx[k]] += omega[k] * z[i, k];
    }
    vector[P] th = exp(lth);
    vector[5] y0 = [th[1] * amt[i], 0, 0, log(blast0[i]), 1]';
    array[n_t[i]] vector[5] sol;
    if (n_t[i] > 0) {
      sol = ode_rk45_tol(rhs, y0, t0, to_array_1d(segment(ts, t_start[i], n_t[i])), rtol, atol,
                         max_steps, th);
    }
    for (n in o_start[i]:(o_start[i] + o_n[i] - 1)) {
      vector[5] y = tpos[n] == 0 ? y0 : sol[tpos[n] - t_start[i] + 1];
      real c = y[1] + y[2] + y[3];
      pred[n] = out[n] == 1 ? c : (out[n] == 2 ? th[17] * c : exp(y[4]));
    }
  }
  vector[N_obs] log_pred = log(fmax(pred, 1e-300));
  vector[N_obs] s = sigma[ana];

  target += normal_lpdf(mu | prior_mu, prior_sd);
  target += normal_lpdf(omega | 0, iiv_sd);
  target += std_normal_lpdf(to_vector(z));
  target += normal_lpdf(sigma | 0, sigma_sd);
  target += lognormal_lpdf(value[idx_obs] | log_pred[idx_obs], s[idx_obs]);
  if (N_blq > 0) {
    target += normal_lcdf(log(value[idx_blq]) | log_pred[idx_blq], s[idx_blq]);
  }
}
