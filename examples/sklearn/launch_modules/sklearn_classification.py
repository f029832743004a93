"""Train a small classifier on the iris flowers (shipped with scikit-learn) and report its accuracy."""

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split


def main() -> None:
    features, labels = load_iris(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(features, labels, test_size=0.3, random_state=0, stratify=labels)
    model = LogisticRegression(max_iter=500).fit(train_x, train_y)
    print(f"classification accuracy on {len(test_y)} held-out flowers: {model.score(test_x, test_y):.2f}")


if __name__ == "__main__":
    main()
