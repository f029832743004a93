"""Group generated points into clusters and report the size of each."""

from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs


def main() -> None:
    points, _ = make_blobs(n_samples=300, centers=3, cluster_std=0.6, random_state=0)
    labels = KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(points)
    sizes = sorted(int((labels == cluster).sum()) for cluster in range(3))
    print(f"cluster sizes: {sizes}")


if __name__ == "__main__":
    main()
