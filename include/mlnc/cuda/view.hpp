#pragma once
// Non-owning views of device memory the caller owns (a PyTorch tensor, a cudaMalloc'ed array):
// a pointer and a shape, never dereferenced on the host. Matrices are column-major with a leading
// dimension, as cuBLAS sees them: a contiguous PyTorch (N, K) row-major tensor is the K x N
// column-major matrix with ld = K (device_matrix_view<T>::of_row_major). No CUDA header is needed.

#include <mlnc/error.hpp>
#include <mlnc/types.hpp>

#include <string>
#include <type_traits>

namespace mlnc {

// A rows x cols column-major matrix in device memory: entry (r, c) at data[r + c * ld].
template <class T>
struct device_matrix_view {
    T* data = nullptr;
    index_t rows = 0, cols = 0;
    index_t ld = 0;  // >= rows

    device_matrix_view() = default;
    device_matrix_view(T* p, index_t r, index_t c, index_t leading) : data(p), rows(r), cols(c), ld(leading) {
        detail::require(r >= 0 && c >= 0, "device_matrix_view",
                        "negative shape " + std::to_string(r) + " x " + std::to_string(c));
        detail::require(leading >= (r > 0 ? r : 1), "device_matrix_view",
                        "leading dimension " + std::to_string(leading) + " is smaller than the " + std::to_string(r) +
                            " rows");
        detail::require(p != nullptr || r * c == 0, "device_matrix_view", "null pointer for a non-empty matrix");
    }
    device_matrix_view(T* p, index_t r, index_t c) : device_matrix_view(p, r, c, r > 0 ? r : 1) {}
    // The read-only view of the same memory.
    template <class U>
        requires(std::is_same_v<T, const U>)
    device_matrix_view(const device_matrix_view<U>& v) : data(v.data), rows(v.rows), cols(v.cols), ld(v.ld) {}

    // A contiguous row-major n x k array (PyTorch's (N, K) logits) as the k x n column-major
    // matrix it is in memory: column i = row i of the tensor.
    static device_matrix_view of_row_major(T* p, index_t n, index_t k) { return {p, k, n, k > 0 ? k : 1}; }

    bool empty() const noexcept { return rows == 0 || cols == 0; }
    // Columns [c0, c0 + n) and rows [r0, r0 + m): views of the same memory.
    device_matrix_view middle_cols(index_t c0, index_t n) const { return {data + c0 * ld, rows, n, ld}; }
    device_matrix_view middle_rows(index_t r0, index_t m) const { return {data + r0, m, cols, ld}; }
};

// A contiguous vector in device memory.
template <class T>
struct device_vector_view {
    T* data = nullptr;
    index_t size = 0;

    device_vector_view() = default;
    device_vector_view(T* p, index_t n) : data(p), size(n) {
        detail::require(n >= 0, "device_vector_view", "negative size " + std::to_string(n));
        detail::require(p != nullptr || n == 0, "device_vector_view", "null pointer for a non-empty vector");
    }
    template <class U>
        requires(std::is_same_v<T, const U>)
    device_vector_view(const device_vector_view<U>& v) : data(v.data), size(v.size) {}
};

}  // namespace mlnc
