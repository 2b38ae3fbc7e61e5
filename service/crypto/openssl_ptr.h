// Owning pointers to OpenSSL objects: std::unique_ptr<T, OpenSslFree> frees
// each with its own OpenSSL function.
#ifndef TOKENBROKER_SERVICE_CRYPTO_OPENSSL_PTR_H_
#define TOKENBROKER_SERVICE_CRYPTO_OPENSSL_PTR_H_

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace tokenbroker {

struct OpenSslFree {
  void operator()(BIO* b) const { BIO_free(b); }
  void operator()(X509* x) const { X509_free(x); }
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
  void operator()(BIGNUM* b) const { BN_free(b); }
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};

template <typename T>
using OpenSslPtr = std::unique_ptr<T, OpenSslFree>;

}  // namespace tokenbroker

#endif  // TOKENBROKER_SERVICE_CRYPTO_OPENSSL_PTR_H_
