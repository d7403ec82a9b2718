#include <mlnc/labels.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <cstdlib>
#include <string>

#include <array>
#include <cstdint>
#include <limits>
#include <random>
#include <set>

using mlnc::index_t;
using mlnc::label_sets;
using mlnc::label_t;

namespace {
std::vector<index_t> as_vec(std::span<const label_t> s) { return {s.begin(), s.end()}; }
}  // namespace

TEST_CASE("label_sets from lists: sorted CSR, multiplicities, histogram") {
    const auto S = label_sets::from_lists({{2, 0}, {1}, {3, 1, 2}, {0, 1, 2, 3}}, 4);
    REQUIRE(S.size() == 4);
    REQUIRE(S.num_labels() == 4);
    CHECK(as_vec(S[0]) == std::vector<index_t>{0, 2});
    CHECK(as_vec(S[2]) == std::vector<index_t>{1, 2, 3});
    CHECK(S.multiplicity(3) == 4);
    CHECK(S.max_multiplicity() == 4);
    CHECK(S.multiplicity_histogram() == std::vector<index_t>{0, 1, 1, 1, 1});
    CHECK(S.offsets() == std::vector<index_t>{0, 2, 3, 6, 10});
    CHECK(S.multi_hot(0) == Eigen::Vector4d(1, 0, 1, 0));
}

TEST_CASE("label_sets from multi-hot and CSR agree with lists") {
    Eigen::MatrixXi Y(3, 5);
    Y << 1, 0, 0, 1, 0,  //
        0, 0, 0, 0, 1,   //
        1, 1, 1, 1, 1;
    const auto a = label_sets::from_multi_hot(Y);
    const auto b = label_sets::from_lists({{0, 3}, {4}, {0, 1, 2, 3, 4}}, 5);
    const auto c = label_sets::from_csr({0, 2, 3, 8}, {0, 3, 4, 0, 1, 2, 3, 4}, 5);
    CHECK(a == b);
    CHECK(b == c);
    Eigen::MatrixXd Yd = Y.cast<double>();
    CHECK(label_sets::from_multi_hot(Yd) == b);
}

TEST_CASE("label_sets validation names the sample and the problem") {
    using Catch::Matchers::Contains;
    CHECK_THROWS_WITH(label_sets::from_lists({{0}, {}}, 3), Contains("sample 1") && Contains("empty"));
    CHECK_THROWS_WITH(label_sets::from_lists({{0, 3}}, 3), Contains("sample 0") && Contains("out of range"));
    CHECK_THROWS_WITH(label_sets::from_lists({{0}, {1}, {-1}}, 3), Contains("sample 2") && Contains("negative"));
    CHECK_THROWS_WITH(label_sets::from_lists({{1, 0, 1}}, 3), Contains("sample 0") && Contains("duplicate"));
    CHECK_THROWS_WITH(label_sets::from_lists({{0}}, 1), Contains("K must be at least 2"));
    Eigen::MatrixXd Y(2, 3);
    Y << 1, 0, 0, 0, 0.5, 1;
    CHECK_THROWS_WITH(label_sets::from_multi_hot(Y), Contains("sample 1") && Contains("neither 0 nor 1"));
    Y.row(1).setZero();
    CHECK_THROWS_WITH(label_sets::from_multi_hot(Y), Contains("sample 1") && Contains("empty"));
    CHECK_THROWS_WITH(label_sets::from_csr({0, 2}, {1, 0}, 3), Contains("not sorted"));
    CHECK_THROWS_WITH(label_sets::from_csr({0, 1}, {1, 0}, 3), Contains("offsets"));
    CHECK_THROWS_AS(label_sets::from_lists({{0}}, 1), mlnc::error);
}

TEST_CASE("grouping by label set: multiplicity, then lexicographic order") {
    const auto S = label_sets::from_lists({{1, 2}, {0}, {1}, {0}, {1, 2}, {0, 2}, {0, 1, 2}}, 3);
    const auto g = mlnc::group_by_label_set(S);
    REQUIRE(g.size() == 5);
    CHECK(as_vec(g.sets[0]) == std::vector<index_t>{0});
    CHECK(as_vec(g.sets[1]) == std::vector<index_t>{1});
    CHECK(as_vec(g.sets[2]) == std::vector<index_t>{0, 2});
    CHECK(as_vec(g.sets[3]) == std::vector<index_t>{1, 2});
    CHECK(as_vec(g.sets[4]) == std::vector<index_t>{0, 1, 2});
    CHECK(g.members[0] == std::vector<index_t>{1, 3});
    CHECK(g.members[3] == std::vector<index_t>{0, 4});
    for (index_t i = 0; i < S.size(); ++i) {
        const auto grp = g.group_of[static_cast<std::size_t>(i)];
        CHECK(as_vec(g.sets[grp]) == as_vec(S[i]));
    }
}

TEST_CASE("binomials: exact 128-bit values and overflow detection") {
    CHECK(mlnc::binomial(5, 2) == 10);
    CHECK(mlnc::binomial(5, 0) == 1);
    CHECK(mlnc::binomial(5, 6) == 0);
    CHECK(mlnc::binomial(64, 32) == static_cast<mlnc::u128>(1832624140942590534ULL));
    // C(1e6, 7) = 1.98e38 < 2^128 = 3.4e38: exact; checked against the product formula in long
    // double (7 roundings of 1e-19 each) and log_binomial (a sum of 7 logs: 1e-14 relative after
    // exp of a value ~88). C(1e6, 8) = 2.5e43 overflows.
    const mlnc::u128 c7 = mlnc::binomial(1000000, 7);
    long double prod = 1;
    for (int i = 1; i <= 7; ++i) prod = prod * static_cast<long double>(1000000 - 7 + i) / i;
    CHECK(std::abs(static_cast<long double>(c7) / prod - 1.0L) < 1e-17L);
    CHECK(std::abs(static_cast<long double>(c7) / std::exp(static_cast<long double>(mlnc::log_binomial(1000000, 7))) -
                   1.0L) < 1e-13L);
    // The lgamma branch (min(k, n-k) > 256) against log C(600, 300) = 412.46363548924063 (exact
    // integer arithmetic): lgamma(601) ~ 3243 carries an absolute error ~1e-12, 3e-15 relative.
    CHECK(mlnc::log_binomial(600, 300) == Approx(412.46363548924063).epsilon(1e-13));
    CHECK(mlnc::log_binomial(600, 257) == Approx(mlnc::log_binomial(600, 343)).epsilon(1e-15));
    CHECK_THROWS_WITH(mlnc::binomial(1000000, 8), Catch::Matchers::Contains("exceeds 2^128"));
    CHECK(mlnc::to_string(mlnc::binomial(100, 50)) == "100891344545564193334812497256");
    CHECK(mlnc::log_binomial(10, 3) == Approx(std::log(120.0)).epsilon(1e-14));
}

TEST_CASE("subset rank/unrank: lexicographic order, bijection") {
    // Enumerate all m-subsets of {0..K-1} in lexicographic order by brute force and compare.
    for (index_t K : {2, 3, 5, 7}) {
        for (index_t m = 1; m <= K; ++m) {
            std::vector<std::vector<label_t>> all;
            for (unsigned mask = 0; mask < (1u << K); ++mask) {
                if (std::popcount(mask) != m) continue;
                std::vector<label_t> s;
                for (label_t k = 0; k < K; ++k)
                    if (mask & (1u << k)) s.push_back(k);
                all.push_back(s);
            }
            std::sort(all.begin(), all.end());
            REQUIRE(static_cast<mlnc::u128>(all.size()) == mlnc::binomial(K, m));
            for (std::size_t r = 0; r < all.size(); ++r) {
                CHECK(mlnc::subset_rank(all[r], K) == r);
                CHECK(mlnc::subset_unrank(r, m, K) == all[r]);
            }
        }
    }
}

TEST_CASE("subset rank/unrank at K = 10^6") {
    const index_t K = 1000000;
    std::mt19937_64 rng(7);
    for (index_t m : {1, 2, 5, 7}) {
        const mlnc::u128 total = mlnc::binomial(K, m);
        CHECK(mlnc::subset_unrank(0, m, K).front() == 0);
        CHECK(mlnc::subset_unrank(total - 1, m, K).back() == K - 1);
        for (int rep = 0; rep < 20; ++rep) {
            std::set<label_t> s;
            while (static_cast<index_t>(s.size()) < m) s.insert(static_cast<label_t>(rng() % K));
            const std::vector<label_t> v(s.begin(), s.end());
            const auto r = mlnc::subset_rank(v, K);
            CHECK(r < total);
            CHECK(mlnc::subset_unrank(r, m, K) == v);
        }
    }
    // Neighbours in lexicographic order.
    const std::vector<label_t> a{0, 1, 999999}, b{0, 2, 3};
    CHECK(mlnc::subset_rank(b, K) == mlnc::subset_rank(a, K) + 1);
    CHECK_THROWS_AS(mlnc::subset_rank(std::vector<label_t>{1, 1}, K), mlnc::error);
    CHECK_THROWS_AS(mlnc::subset_unrank(mlnc::binomial(K, 2), 2, K), mlnc::error);
    CHECK_THROWS_AS(mlnc::subset_rank(std::vector<label_t>{0, 1, 2, 3, 4, 5, 6, 7}, K), mlnc::error);
}

TEST_CASE("CSR offsets are all validated before any index is read") {
    using Catch::Matchers::Contains;
    // {0, 5, 3} with three indices: sample 0 would span [0, 5), past the end of the indices.
    // Before the fix the range was copied first (a read past the end, caught by ASan) and the
    // decrease noticed only at sample 1.
    CHECK_THROWS_WITH(label_sets::from_csr({0, 5, 3}, {0, 1, 2}, 6), Contains("decrease at sample 1"));
    CHECK_THROWS_WITH(label_sets::from_csr({0, 2, 1, 3}, {0, 1, 2}, 6), Contains("decrease at sample 1"));
    CHECK_THROWS_WITH(label_sets::from_csr({0, -4, 3}, {0, 1, 2}, 6), Contains("decrease at sample 0"));
    CHECK_THROWS_WITH(label_sets::from_csr({0, 4}, {0, 1, 2}, 6), Contains("end at the number of indices"));
    CHECK_THROWS_WITH(label_sets::from_csr({}, {}, 6), Contains("offsets"));
    CHECK_THROWS_WITH(label_sets::from_csr({0, 1}, {7}, 6), Contains("out of range"));
    CHECK_THROWS_WITH(label_sets::from_csr({0, 1}, {-1}, 6), Contains("negative"));
    CHECK(label_sets::from_csr({0, 2, 3}, {0, 4, 1}, 6).size() == 2);
}

TEST_CASE("distinct and absent labels cost nothing of size K") {
    // K = 2^31 - 1 with three samples: a vector of K flags would be 2 GB, of K counts 16 GB.
    const auto S = label_sets::from_lists({{5}, {0, 2147483646}, {5}}, 2147483647);
    CHECK(S.distinct_labels() == std::vector<label_t>{0, 5, 2147483646});
    const auto [first, count] = S.absent_labels(4);
    CHECK(first == std::vector<index_t>{1, 2, 3, 4});
    CHECK(count == 2147483647 - 3);
    const auto small = label_sets::from_lists({{0}, {2}}, 4);
    CHECK(small.absent_labels().first == std::vector<index_t>{1, 3});
    CHECK(label_sets::from_lists({{0, 1}}, 2).absent_labels().second == 0);
}

TEST_CASE("label_sets from lists and CSR arrays of other integer types") {
    using Catch::Matchers::Contains;
    const auto ref = label_sets::from_lists({{0, 3}, {4}, {1, 2}}, 5);
    CHECK(label_sets::from_lists(std::vector<std::vector<std::uint16_t>>{{3, 0}, {4}, {2, 1}}, 5) == ref);
    CHECK(label_sets::from_lists(std::vector<std::array<long, 2>>{{0, 3}, {1, 2}}, 5) ==
          label_sets::from_lists({{0, 3}, {1, 2}}, 5));
    CHECK(label_sets::from_lists(std::vector<std::vector<std::int8_t>>{{0, 3}, {4}, {1, 2}}, 5) == ref);
    CHECK(label_sets::from_csr(std::vector<int>{0, 2, 3, 5}, std::vector<std::uint8_t>{0, 3, 4, 1, 2}, 5) == ref);
    CHECK(label_sets::from_csr(std::vector<std::uint64_t>{0, 2, 3, 5}, std::vector<short>{0, 3, 4, 1, 2}, 5) == ref);

    // Values of wide types that do not fit: refused, not wrapped around.
    const std::uint64_t huge = std::numeric_limits<std::uint64_t>::max();  // -1 after a cast to int64
    CHECK_THROWS_WITH(label_sets::from_lists(std::vector<std::vector<std::uint64_t>>{{0}, {huge}}, 5),
                      Contains("sample 1") && Contains("out of range"));
    CHECK_THROWS_WITH(label_sets::from_lists(std::vector<std::vector<std::int64_t>>{{std::int64_t{1} << 32}}, 5),
                      Contains("sample 0") && Contains("out of range [0, 5)"));
    CHECK_THROWS_WITH(label_sets::from_lists(std::vector<std::vector<std::int8_t>>{{0, -1}}, 5), Contains("negative"));
    // 2^32 + 1 would wrap to label 1 in an int32.
    const std::vector<std::int64_t> wraps{(std::int64_t{1} << 32) + 1};
    CHECK_THROWS_WITH(label_sets::from_csr(std::vector<int>{0, 1}, wraps, 5), Contains("CSR label index 4294967297 out of range"));
    CHECK_THROWS_WITH(label_sets::from_csr(std::vector<std::uint64_t>{0, huge}, std::vector<int>{0}, 5),
                      Contains("CSR offset") && Contains("out of range"));
    CHECK_THROWS_WITH(label_sets::from_csr(std::vector<int>{0, 1}, std::vector<int>{-1}, 5), Contains("negative"));
    CHECK_THROWS_WITH(label_sets::from_csr(std::vector<int>{0, 1}, std::vector<int>{5}, 5), Contains("out of range"));
    CHECK_THROWS_WITH(label_sets::from_csr(std::vector<int>{0, 1}, std::vector<int>{0}, 1),
                      Contains("K must be at least 2"));
}

TEST_CASE("balanced_label_sets: every m-subset n_m times, by multiplicity then rank") {
    const auto S = mlnc::balanced_label_sets(4, {{1, 2}, {2, 0}, {3, 1}});
    // 4 singletons twice each, no pairs (n_2 = 0), the 4 triples once.
    REQUIRE(S.size() == 12);
    CHECK(S.num_labels() == 4);
    CHECK(S.multiplicity_histogram() == std::vector<index_t>{0, 8, 0, 4});
    const std::vector<std::vector<index_t>> expected{{0}, {0}, {1}, {1}, {2}, {2}, {3}, {3},
                                                     {0, 1, 2}, {0, 1, 3}, {0, 2, 3}, {1, 2, 3}};
    for (index_t i = 0; i < S.size(); ++i) CHECK(as_vec(S[i]) == expected[static_cast<std::size_t>(i)]);
    // The same as the ranks enumerated by hand, for a larger case with m = K.
    const mlnc::multiplicity_counts n{{2, 3}, {5, 2}};
    const auto T = mlnc::balanced_label_sets(5, n);
    REQUIRE(T.size() == 10 * 3 + 2);
    index_t i = 0;
    for (const auto& [m, count] : n)
        for (mlnc::u128 r = 0; r < mlnc::binomial(5, m); ++r)
            for (index_t t = 0; t < count; ++t) CHECK(as_vec(T[i++]) == as_vec(mlnc::subset_unrank(r, m, 5)));
    // Sparse counts: one large multiplicity alone.
    CHECK(mlnc::balanced_label_sets(1000, {{999, 1}}).size() == 1000);
}

TEST_CASE("balanced_label_sets: refusals name the argument") {
    using Catch::Matchers::Contains;
    using Catch::Matchers::StartsWith;
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(1, {{1, 1}}), StartsWith("K:"));
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(std::int64_t{1} << 31, {{1, 1}}), StartsWith("K:"));
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(3, {{4, 1}}), StartsWith("n:") && Contains("exceeds K = 3"));
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(3, {{1, 2}, {2, -1}}), StartsWith("n:") && Contains("n_2 = -1"));
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(3, {}), StartsWith("n:") && Contains("no samples"));
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(3, {{1, 0}}), StartsWith("n:") && Contains("no samples"));
    // C(100, 3) = 161700 sets; the cap is checked before anything is built.
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(100, {{3, 1}}, 100000), StartsWith("n:") && Contains("max_samples"));
    CHECK(mlnc::balanced_label_sets(100, {{3, 1}}, 200000).size() == 161700);
    // K = 10^6, m = 8: 2.5e43 samples, refused without overflow.
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(1000000, {{8, 1}}), Contains("max_samples"));
    // The count is exact: a list of exactly max_samples is accepted, one more sample is not.
    CHECK(mlnc::balanced_label_sets(100, {{3, 1}}, 161700).size() == 161700);
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(100, {{3, 1}}, 161699), Contains("= 161700 samples"));
    CHECK_THROWS_WITH(mlnc::balanced_label_sets(100, {{1, 1}, {3, 1}}, 161750), Contains("plus 100 before"));
    // Memory is checked before the lists are built.
    setenv("MLNC_MEMORY_LIMIT", "100000", 1);
    const std::string msg = mlnc_test::error_of([] { mlnc::balanced_label_sets(100, {{3, 1}}); });
    unsetenv("MLNC_MEMORY_LIMIT");
    CHECK_THAT(msg, StartsWith("n:") && Contains("memory"));
}

TEST_CASE("sample_subset: a view of some samples and their feature columns") {
    using Catch::Matchers::Contains;
    const auto S = label_sets::from_lists({{0}, {1, 2}, {2}, {0, 1, 2}, {1}}, 3);
    const mlnc::sample_subset sub(S, {3, 0, 3});  // any order, repeats allowed
    CHECK(sub.size() == 3);
    CHECK_FALSE(sub.empty());
    CHECK(sub.num_labels() == 3);
    CHECK(sub.total_samples() == 5);
    CHECK(&sub.parent() == &S);
    CHECK(sub.indices() == std::vector<index_t>{3, 0, 3});
    CHECK(as_vec(sub[0]) == std::vector<index_t>{0, 1, 2});
    CHECK(as_vec(sub[1]) == std::vector<index_t>{0});
    CHECK(sub.multiplicity(0) == 3);
    CHECK(sub.multiplicity(1) == 1);
    CHECK(sub.to_label_sets() == label_sets::from_lists({{0, 1, 2}, {0}, {0, 1, 2}}, 3));

    const auto r = mlnc::sample_subset::range(S, 1, 3);
    CHECK(r.indices() == std::vector<index_t>{1, 2, 3});
    CHECK(r.to_label_sets() == label_sets::from_lists({{1, 2}, {2}, {0, 1, 2}}, 3));
    CHECK(mlnc::sample_subset::range(S, 5, 0).empty());

    // columns(H): read from a const matrix, and written through into a mutable one.
    Eigen::MatrixXd H(2, 5);
    H << 0, 1, 2, 3, 4,  //
        10, 11, 12, 13, 14;
    const Eigen::MatrixXd& Hc = H;
    const Eigen::MatrixXd read = sub.columns(Hc);
    Eigen::MatrixXd expected(2, 3);
    expected << 3, 0, 3,  //
        13, 10, 13;
    CHECK(read == expected);
    const mlnc::sample_subset odd(S, {1, 3});
    odd.columns(H) = Eigen::MatrixXd::Constant(2, 2, -1.0);
    Eigen::MatrixXd after(2, 5);
    after << 0, -1, 2, -1, 4,  //
        10, -1, 12, -1, 14;
    CHECK(H == after);
    odd.columns(H).array() += 1.0;
    CHECK(H.col(1).isZero());
    CHECK(H.col(3).isZero());
    CHECK(H.col(0) == after.col(0));
    CHECK_THROWS_WITH(odd.columns(Eigen::MatrixXd(2, 4)), Contains("H:") && Contains("expected 5 columns"));
}

TEST_CASE("sample_subset: indices outside the samples are refused") {
    using Catch::Matchers::Contains;
    const auto S = label_sets::from_lists({{0}, {1}, {0, 1}}, 2);
    CHECK_THROWS_WITH(mlnc::sample_subset(S, {0, 3}), Contains("index 3 (entry 1)") && Contains("[0, 3)"));
    CHECK_THROWS_WITH(mlnc::sample_subset(S, {-1}), Contains("index -1 (entry 0)"));
    CHECK_THROWS_WITH(mlnc::sample_subset::range(S, 2, 2), Contains("not inside [0, 3)"));
    CHECK_THROWS_AS(mlnc::sample_subset::range(S, -1, 1), mlnc::error);
    CHECK_THROWS_AS(mlnc::sample_subset::range(S, 0, -1), mlnc::error);
    // A count so large that begin + count overflows is still refused.
    CHECK_THROWS_AS(mlnc::sample_subset::range(S, 1, std::numeric_limits<index_t>::max()), mlnc::error);
    CHECK(mlnc::sample_subset(S, {}).empty());
}
