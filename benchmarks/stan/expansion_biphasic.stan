// ckmodel's expansion_biphasic population model, written by hand for the fit benchmark
// (benchmarks/bench_fit.py). Same likelihood and priors as ckmodel.population.build_model:
//   parameter p of subject i:  g(theta_ip) = mu_p + sum_k X_ik b_k [cov_param_k = p]
//                                            + omega_p z_ip,  z_ip ~ N(0, 1) (non-centred)
//   g = log for f0, rho, tmax, alpha, beta; logit for fb
//   mu_p ~ Normal(prior_mu_p, prior_sd_p), omega_p ~ HalfNormal(iiv_sd_p), sigma ~ HalfNormal,
//   covariate coefficients b ~ Normal(b_mu, b_sd)
//   E = (1 - fb) f0 AMT exp(rho t - (rho + alpha) G),  M = fb f0 AMT exp(rho t - (rho + beta) G)
//   G = w (softplus((t - tmax) / w) - softplus(-tmax / w))   (integral of a logistic gate)
//   PB_QPCR = E + M, log-normal residual; BLQ records: log P(y < LLOQ) (M3)
// Every density is added with target += ..._lpdf (constants kept), so the log density equals
// PyMC's up to the log(2) of each half-normal prior.
data {
  int<lower=1> N_subj;
  int<lower=0> N_obs;
  array[N_obs] int<lower=1, upper=N_subj> subj;
  vector[N_obs] tau;            // time since the dose
  vector<lower=0>[N_obs] amt;   // dose amount of the record's subject
  vector<lower=0>[N_obs] value; // observed value, or the LLOQ for BLQ records
  int<lower=0, upper=N_obs> N_blq;
  array[N_obs - N_blq] int<lower=1, upper=N_obs> idx_obs;
  array[N_blq] int<lower=1, upper=N_obs> idx_blq;
  vector[6] prior_mu;           // typical values on the log/logit scale: Normal(prior_mu, prior_sd)
  vector<lower=0>[6] prior_sd;
  vector<lower=0>[6] iiv_sd;    // omega ~ HalfNormal(iiv_sd)
  int<lower=0> K_cov;           // covariate coefficients (columns of X_cov)
  matrix[N_subj, K_cov] X_cov;
  array[K_cov] int<lower=1, upper=6> cov_param;
  vector[K_cov] b_mu;
  vector<lower=0>[K_cov] b_sd;
  real<lower=0> sigma_sd;       // sigma ~ HalfNormal(sigma_sd)
  real<lower=0> w;              // gate width (day)
}
transformed data {
  vector[N_obs] log_value = log(value);
  vector[N_obs] log_amt = log(amt);
}
parameters {
  vector[6] mu;                 // log f0, log rho, log tmax, log alpha, log beta, logit fb
  vector<lower=0>[6] omega;
  matrix[N_subj, 6] z;
  vector[K_cov] b_cov;
  real<lower=0> sigma;
}
model {
  matrix[N_subj, 6] g = rep_matrix(mu', N_subj) + z * diag_matrix(omega);
  for (k in 1:K_cov) {
    g[:, cov_param[k]] += col(X_cov, k) * b_cov[k];
  }
  vector[N_subj] log_f0 = col(g, 1);
  vector[N_subj] rho = exp(col(g, 2));
  vector[N_subj] tmax = exp(col(g, 3));
  vector[N_subj] alpha = exp(col(g, 4));
  vector[N_subj] beta = exp(col(g, 5));
  vector[N_subj] lfb = log_inv_logit(col(g, 6));     // log fb
  vector[N_subj] l1mfb = log1m_inv_logit(col(g, 6)); // log(1 - fb)

  vector[N_obs] tm = tmax[subj];
  vector[N_obs] r = rho[subj];
  vector[N_obs] G = w * (log1p_exp((tau - tm) / w) - log1p_exp(-tm / w));
  vector[N_obs] base = log_f0[subj] + log_amt + r .* tau;
  vector[N_obs] log_e = l1mfb[subj] + base - (r + alpha[subj]) .* G;
  vector[N_obs] log_m = lfb[subj] + base - (r + beta[subj]) .* G;
  vector[N_obs] log_pred;
  for (n in 1:N_obs) {
    log_pred[n] = log_sum_exp(log_e[n], log_m[n]);
  }

  target += normal_lpdf(mu | prior_mu, prior_sd);
  target += normal_lpdf(omega | 0, iiv_sd);
  target += std_normal_lpdf(to_vector(z));
  target += normal_lpdf(b_cov | b_mu, b_sd);
  target += normal_lpdf(sigma | 0, sigma_sd);
  target += lognormal_lpdf(value[idx_obs] | log_pred[idx_obs], sigma);
  if (N_blq > 0) {
    target += normal_lcdf(log_value[idx_blq] | log_pred[idx_blq], sigma);
  }
}
