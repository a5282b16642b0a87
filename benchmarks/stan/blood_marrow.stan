// ckmodel's blood_marrow population model, written by hand for the fit benchmark
// (benchmarks/bench_fit.py). Same likelihood and priors as ckmodel.population.build_model:
//   parameter p of subject i:  g(theta_ip) = mu_p + sum_k X_ik b_k [cov_param_k = p]
//                                            + omega_p z_ip (non-centred, IIV parameters only)
//   g = log for f0, rho, tmax, alpha, beta, kbm, kmb, cpc; logit for fb
//   mu_p ~ Normal(prior_mu_p, prior_sd_p), omega ~ HalfNormal(iiv_sd),
//   b ~ Normal(b_mu, b_sd), sigma_a ~ HalfNormal(sigma_sd_a)
//   X = (1 - fb) f0 AMT exp(rho t - (rho + alpha) G) + fb f0 AMT exp(rho t - (rho + beta) G)
//   G = w (softplus((t - tmax) / w) - softplus(-tmax / w))   (integral of a logistic gate)
//   c = kbm + kmb; PB_QPCR = X (kmb + kbm e^{-c t}) / c; BM_QPCR = X kbm (1 - e^{-c t}) / c;
//   PB_FLOW = PB_QPCR / cpc; log-normal residual per analyte; BLQ records: log P(y < LLOQ) (M3)
// Every density is added with target += ..._lpdf (constants kept), so the log density equals
// PyMC's up to the log(2) of each half-normal prior.
data {
  int<lower=1> N_subj;
  int<lower=0> N_obs;
  array[N_obs] int<lower=1, upper=N_subj> subj;
  vector<lower=0>[N_obs] tau;   // time since the dose (> 0)
  vector<lower=0>[N_obs] amt;   // dose amount of the record's subject
  vector<lower=0>[N_obs] value; // observed value, or the LLOQ for BLQ records
  int<lower=1> A;               // analytes (the order of sigma)
  array[N_obs] int<lower=1, upper=A> ana;
  int<lower=0, upper=N_obs> N_pb;         // blood records (PB_QPCR and PB_FLOW)
  array[N_pb] int<lower=1, upper=N_obs> idx_pb;
  array[N_obs - N_pb] int<lower=1, upper=N_obs> idx_bm;  // marrow records (BM_QPCR)
  int<lower=0, upper=N_pb> N_flow;       // PB_FLOW records (also in idx_pb)
  array[N_flow] int<lower=1, upper=N_obs> idx_flow;
  int<lower=0, upper=N_obs> N_blq;
  array[N_obs - N_blq] int<lower=1, upper=N_obs> idx_obs;
  array[N_blq] int<lower=1, upper=N_obs> idx_blq;
  vector[9] prior_mu;           // typical values on the log/logit scale
  vector<lower=0>[9] prior_sd;
  int<lower=0, upper=9> K;      // parameters with IIV
  array[K] int<lower=1, upper=9> iiv_idx;
  vector<lower=0>[K] iiv_sd;
  int<lower=0> K_cov;           // covariate coefficients
  matrix[N_subj, K_cov] X_cov;
  array[K_cov] int<lower=1, upper=9> cov_param;
  vector[K_cov] b_mu;
  vector<lower=0>[K_cov] b_sd;
  vector<lower=0>[A] sigma_sd;
  real<lower=0> w;              // gate width (day)
}
transformed data {
  vector[N_obs] log_value = log(value);
  vector[N_obs] log_amt = log(amt);
}
parameters {
  vector[9] mu;   // log f0, log rho, log tmax, log alpha, log beta, logit fb, log kbm, kmb, cpc
  vector<lower=0>[K] omega;
  matrix[N_subj, K] z;
  vector[K_cov] b_cov;
  vector<lower=0>[A] sigma;
}
model {
  matrix[N_subj, 9] g = rep_matrix(mu', N_subj);
  for (k in 1:K_cov) {
    g[:, cov_param[k]] += col(X_cov, k) * b_cov[k];
  }
  for (k in 1:K) {
    g[:, iiv_idx[k]] += col(z, k) * omega[k];
  }
  vector[N_subj] log_f0 = col(g, 1);
  vector[N_subj] rho = exp(col(g, 2));
  vector[N_subj] tmax = exp(col(g, 3));
  vector[N_subj] alpha = exp(col(g, 4));
  vector[N_subj] beta = exp(col(g, 5));
  vector[N_subj] lfb = log_inv_logit(col(g, 6));
  vector[N_subj] l1mfb = log1m_inv_logit(col(g, 6));
  vector[N_subj] log_kbm = col(g, 7);
  vector[N_subj] kbm = exp(log_kbm);
  vector[N_subj] kmb = exp(col(g, 8));
  vector[N_subj] log_cpc = col(g, 9);

  vector[N_obs] tm = tmax[subj];
  vector[N_obs] r = rho[subj];
  vector[N_obs] G = w * (log1p_exp((tau - tm) / w) - log1p_exp(-tm / w));
  vector[N_obs] base = log_f0[subj] + log_amt + r .* tau;
  vector[N_obs] log_e = l1mfb[subj] + base - (r + alpha[subj]) .* G;
  vector[N_obs] log_m = lfb[subj] + base - (r + beta[subj]) .* G;
  vector[N_obs] c = kbm[subj] + kmb[subj];
  vector[N_obs] log_pred;
  for (n in 1:N_obs) {
    log_pred[n] = log_sum_exp(log_e[n], log_m[n]) - log(c[n]);
  }
  // blood (qPCR and flow): X (kmb + kbm e^{-c t}) / c; marrow: X kbm (1 - e^{-c t}) / c
  log_pred[idx_pb] += log(kmb[subj[idx_pb]] + kbm[subj[idx_pb]] .* exp(-c[idx_pb] .* tau[idx_pb]));
  log_pred[idx_bm] += log_kbm[subj[idx_bm]] + log1m_exp(-c[idx_bm] .* tau[idx_bm]);
  log_pred[idx_flow] -= log_cpc[subj[idx_flow]];
  vector[N_obs] s = sigma[ana];

  target += normal_lpdf(mu | prior_mu, prior_sd);
  target += normal_lpdf(omega | 0, iiv_sd);
  target += std_normal_lpdf(to_vector(z));
  target += normal_lpdf(b_cov | b_mu, b_sd);
  target += normal_lpdf(sigma | 0, sigma_sd);
  target += lognormal_lpdf(value[idx_obs] | log_pred[idx_obs], s[idx_obs]);
  if (N_blq > 0) {
    target += normal_lcdf(log_value[idx_blq] | log_pred[idx_blq], s[idx_blq]);
  }
}
